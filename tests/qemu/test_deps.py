"""Build dependencies: the message names the packages."""

import pytest

from harness.qemu import deps


def test_missing_uses_the_check_given():
    absent = {"flex", "libglib2.0-dev"}
    got = deps.missing(installed=lambda p: p not in absent)
    assert sorted(got) == sorted(absent)


def test_message_names_every_package_and_the_remedy():
    msg = deps.missing_message(["flex", "bison"])
    assert "flex" in msg and "bison" in msg
    assert "apt-get install flex bison" in msg and "--install-deps" in msg
    assert "\n" not in msg


def test_ensure_without_install_raises_naming_packages(monkeypatch):
    monkeypatch.setattr(deps, "missing", lambda: ["zlib1g-dev"])
    with pytest.raises(deps.HarnessError, match="zlib1g-dev"):
        deps.ensure(install_missing=False)


def test_optional_packages_are_tried_and_never_required(monkeypatch):
    """ccache is installed with --install-deps when it can be; failing that is no error."""
    asked = []
    monkeypatch.setattr(deps, "missing", lambda d=deps.BUILD_DEPS: [x.package for x in d
                                                                   if x in deps.OPTIONAL_DEPS])

    def install(packages, log=None):
        asked.append(packages)
        raise deps.HarnessError("apt-get install failed for: " + " ".join(packages))
    monkeypatch.setattr(deps, "install", install)
    assert deps.ensure(install_missing=True) == []  # tried, not installed, no error
    assert asked == [["ccache"]]
    assert deps.ensure(install_missing=False) == []  # not asked for: not tried
    assert asked == [["ccache"]]


def test_library_deps_are_debian_build_depends(qemu_packaging):
    # Every -dev package and build tool we ask for is one Debian itself uses
    # (debian/control of the source package set-up downloaded).
    text = (qemu_packaging / "control").read_text()
    for d in deps.BUILD_DEPS:
        if d.package.endswith("-dev") or d.package in ("ninja-build", "flex", "bison",
                                                       "pkgconf", "python3-venv"):
            assert d.package in text, d.package
