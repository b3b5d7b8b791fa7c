"""The build cache: keys, atomic entries, failure paths.

Building real QEMU takes minutes and is exercised by ./setup.sh and
.ci/run; here a fake QEMU source tree (a ``configure`` shell script that
writes a real ``build.ninja``) drives the real ninja through the same code.
The meson venv, the igvm library and the dependency check are replaced by
stubs (named ``stub_*``) since they are not what these tests check.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.qemu import build, libigvm

pytestmark = pytest.mark.skipif(shutil.which("ninja") is None, reason="no ninja (ninja-build)")

CONFIGURE_OK = r"""#!/bin/sh
prefix=
for a in "$@"; do case "$a" in --prefix=*) prefix="${a#--prefix=}";; esac; done
echo "configure args: $*"
cat > build.ninja <<NINJA
rule mk
  command = echo built > \$out
rule inst
  command = mkdir -p \$\$DESTDIR$prefix/bin && printf '#!/bin/sh\necho QEMU emulator version 10.2.2\n' > \$\$DESTDIR$prefix/bin/qemu-system-x86_64 && chmod +x \$\$DESTDIR$prefix/bin/qemu-system-x86_64
build a.o: mk
build b.o: mk
build all: phony a.o b.o
build install: inst | all
default all
NINJA
"""

CONFIGURE_FAIL = """#!/bin/sh
echo "checking things"
echo "ERROR: Dependency \\"igvm\\" not found, tried pkgconfig"
exit 1
"""


def _tree(tmp_path: Path, configure: str) -> Path:
    tree = tmp_path / "qemu-src"
    (tree / "backends").mkdir(parents=True)
    (tree / "backends" / "igvm.c").write_text("/* fake */\n")
    (tree / "VERSION").write_text("10.2.2\n")
    c = tree / "configure"
    c.write_text(configure)
    c.chmod(c.stat().st_mode | stat.S_IXUSR)
    return tree


@pytest.fixture
def stubbed(monkeypatch):
    def stub_ensure_meson(root, log, progress):
        return Path("/usr/bin/python3")

    def stub_prepare(want, root, log, progress):
        return libigvm.Libigvm("own", "0.0.0", "stub-lib", None, {"source": "stub"})

    monkeypatch.setattr(build, "ensure_meson", stub_ensure_meson)
    monkeypatch.setattr(build.libigvm, "prepare", stub_prepare)
    monkeypatch.setattr(build.deps, "ensure", lambda install_missing, log=None: [])


def test_cache_key_changes_with_each_input():
    base = ("10.2.2", "debian-1:10.2.2+ds-1", "bundled-aaaa", build.CONFIGURE_OPTIONS)
    k = build.cache_key(*base)
    assert k == build.cache_key(*base)
    assert build.cache_key("10.2.3", *base[1:]) != k
    assert build.cache_key(base[0], "tarball-x", *base[2:]) != k
    assert build.cache_key(*base[:2], "system-0.3.4", base[3]) != k
    assert build.cache_key(*base[:3], base[3] + ("--enable-debug",)) != k
    assert build.cache_key(*base[:3], base[3][:-1]) != k


def test_half_written_entries_are_never_used(tmp_path):
    d = build.builds_dir(tmp_path)
    # a temporary of a dead build: complete-looking content, wrong name
    tmp = d / ".tmp-qemu-10.2.2-abc-999999999"
    (tmp / "bin").mkdir(parents=True)
    (tmp / "bin" / build.BINARY).write_text("#!/bin/sh\n")
    (tmp / "bin" / build.BINARY).chmod(0o755)
    (tmp / "build-info.json").write_text("{}")
    # a renamed entry without build-info.json (never finished)
    bad = d / "qemu-10.2.2-def"
    (bad / "bin").mkdir(parents=True)
    (bad / "bin" / build.BINARY).write_text("#!/bin/sh\n")
    (bad / "bin" / build.BINARY).chmod(0o755)
    assert not build.is_complete(tmp)
    assert not build.is_complete(bad)
    assert build.find_entry(tmp_path, "qemu-10.2.2-def") is None
    assert build.current_binary(tmp_path) is None
    build.clean_stale(tmp_path)
    assert not tmp.exists()


def test_failed_configure_one_line_log_and_nothing_left(tmp_path, stubbed):
    tree = _tree(tmp_path, CONFIGURE_FAIL)
    root = tmp_path / "cache"
    with pytest.raises(HarnessError) as exc:
        build.build(str(tree), jobs=1, root=root, progress=build.Progress(io.StringIO()))
    msg = str(exc.value)
    assert "\n" not in msg
    assert "configure failed" in msg and 'Dependency "igvm" not found' in msg
    log = Path(msg.rsplit("see ", 1)[1])
    assert log.is_file() and "checking things" in log.read_text()
    assert [p.name for p in build.builds_dir(root).iterdir()] == []
    assert not list((root / "qemu" / "work").glob("*/build"))  # no half-configured tree
    assert build.current_binary(root) is None


def test_build_installs_atomically_and_reuses_cache(tmp_path, stubbed):
    tree = _tree(tmp_path, CONFIGURE_OK)
    root = tmp_path / "cache"
    err = io.StringIO()
    first = build.build(str(tree), jobs=1, root=root, progress=build.Progress(err))
    assert not first.cached
    assert build.is_complete(first.entry)
    assert first.binary == first.entry / "bin" / build.BINARY
    assert os.access(first.binary, os.X_OK)
    info = json.loads((first.entry / "build-info.json").read_text())
    assert "--enable-igvm" in info["options"] and info["version"] == "10.2.2"
    assert "configure args:" in (first.entry / "build.log").read_text()
    assert "[2/2] 100%" in err.getvalue()  # ninja's [N/M] progress shown
    assert [p.name for p in build.builds_dir(root).iterdir()] == [first.entry.name]
    assert build.current_binary(root) == first.binary
    second = build.build(str(tree), jobs=1, root=root, progress=build.Progress(io.StringIO()))
    assert second.cached and second.entry == first.entry
    # other options -> other entry
    third = build.build(str(tree), jobs=1, root=root, progress=build.Progress(io.StringIO()),
                        options=build.CONFIGURE_OPTIONS + ("--enable-debug",))
    assert not third.cached and third.entry != first.entry


def test_progress_non_tty_prints_tenths():
    out = io.StringIO()
    p = build.Progress(out)
    for i in range(1, 101):
        p.step(i, 100, "cc x.o")
    lines = out.getvalue().splitlines()
    assert len(lines) == 11 and lines[-1].endswith("[100/100] 100%")


def test_jobs_must_be_positive(tmp_path):
    with pytest.raises(HarnessError, match="--jobs"):
        build.build("debian", jobs=-1, root=tmp_path)


def test_library_identity_ignores_build_products(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.c").write_text("int a;\n")
    first = libigvm.tree_digest(tmp_path)
    (tmp_path / "build" / "obj").mkdir(parents=True)
    (tmp_path / "build" / "obj" / "a.o").write_bytes(b"\x7fELF")
    (tmp_path / ".hidden").write_text("x")
    assert libigvm.tree_digest(tmp_path) == first
    (tmp_path / "src" / "a.c").write_text("int a = 1;\n")
    assert libigvm.tree_digest(tmp_path) != first


def test_offline_debian_falls_back_to_matching_cached_build(tmp_path, stubbed, monkeypatch):
    root = tmp_path / "cache"

    def stub_resolve(spec, download_root, log=None, progress=None):
        raise HarnessError("apt-get update for ... failed")

    monkeypatch.setattr(build.source, "resolve", stub_resolve)
    # nothing cached: the apt error is the error
    with pytest.raises(HarnessError, match="apt-get update"):
        build.build("debian", root=root, progress=build.Progress(io.StringIO()))
    for version, opts in (("1:10.2.2+ds-1", build.DEFAULT_OPTIONS),
                          ("1:10.2.3+ds-1", build.DEFAULT_OPTIONS + ("--enable-debug",))):
        e = build.builds_dir(root) / f"qemu-{version[2:]}-x"
        (e / "bin").mkdir(parents=True)
        (e / "bin" / build.BINARY).write_text("#!/bin/sh\n")
        (e / "bin" / build.BINARY).chmod(0o755)
        info = build.BuildInfo(e.name, version, "debian-" + version, "stub-lib", list(opts),
                               str(e / "bin" / build.BINARY))
        (e / "build-info.json").write_text(json.dumps(build.asdict(info)))
    res = build.build("debian", root=root, progress=build.Progress(io.StringIO()))
    assert res.cached and res.info.version == "1:10.2.2+ds-1"  # options must match
    with pytest.raises(HarnessError):  # an explicit version never falls back
        build.build("debian:1:10.2.2+ds-1", root=root, progress=build.Progress(io.StringIO()))


def test_build_tree_reused_across_library_changes(tmp_path, stubbed, monkeypatch):
    tree = _tree(tmp_path, CONFIGURE_OK)
    root = tmp_path / "cache"
    quiet = lambda: build.Progress(io.StringIO())  # noqa: E731
    first = build.build(str(tree), jobs=1, root=root, progress=quiet())
    assert "configure args:" in (first.entry / "build.log").read_text()
    monkeypatch.setattr(build.libigvm, "prepare", lambda want, root, log, progress:
                        libigvm.Libigvm("own", "0.0.1", "stub-2", None))
    second = build.build(str(tree), jobs=1, root=root, progress=quiet())
    assert second.entry != first.entry
    assert "configure args:" in (second.entry / "build.log").read_text()  # new library
    assert len([p for p in (root / "qemu" / "work").iterdir() if p.is_dir()]) == 1
    shutil.rmtree(second.entry)
    third = build.build(str(tree), jobs=1, root=root, progress=quiet())
    assert not third.cached and build.is_complete(third.entry)
    assert "configure args:" not in (third.entry / "build.log").read_text()  # configured tree reused


def test_sync_libigvm_keeps_unchanged_files_and_rewrites_pc(tmp_path):
    a = tmp_path / "libigvm" / "bundled-a"
    (a / "include" / "igvm").mkdir(parents=True)
    (a / "lib" / "pkgconfig").mkdir(parents=True)
    (a / "include" / "igvm" / "igvm.h").write_text("/* h */\n")
    (a / "lib" / "libigvm.a").write_bytes(b"!<arch>\nA")
    (a / "lib" / "pkgconfig" / "igvm.pc").write_text(f"prefix={a}\nVersion: 0.4.0\n")
    (a / ".complete").write_text("x")
    stable = tmp_path / "work" / "libigvm"
    build.sync_libigvm(a, stable)
    assert (stable / "lib" / "pkgconfig" / "igvm.pc").read_text() == f"prefix={stable}\nVersion: 0.4.0\n"
    assert not (stable / ".complete").exists()
    h_mtime = (stable / "include" / "igvm" / "igvm.h").stat().st_mtime_ns
    b = tmp_path / "libigvm" / "bundled-b"
    shutil.copytree(a, b)
    (b / "lib" / "libigvm.a").write_bytes(b"!<arch>\nB")
    (b / "lib" / "pkgconfig" / "igvm.pc").write_text(f"prefix={b}\nVersion: 0.4.0\n")
    (b / "include" / "igvm" / "extra.h").write_text("")
    (a / "include" / "igvm" / "igvm.h").unlink()  # only b matters now
    build.sync_libigvm(b, stable)
    assert (stable / "include" / "igvm" / "igvm.h").stat().st_mtime_ns == h_mtime
    assert (stable / "lib" / "libigvm.a").read_bytes() == b"!<arch>\nB"
    assert (stable / "lib" / "pkgconfig" / "igvm.pc").read_text() == f"prefix={stable}\nVersion: 0.4.0\n"
    (b / "include" / "igvm" / "extra.h").unlink()
    build.sync_libigvm(b, stable)
    assert not (stable / "include" / "igvm" / "extra.h").exists()


def test_prune_keeps_newest_and_current(tmp_path):
    entries = []
    for i in range(6):
        e = build.builds_dir(tmp_path) / f"qemu-10.2.2-{i}"
        (e / "bin").mkdir(parents=True)
        (e / "bin" / build.BINARY).write_text("#!/bin/sh\n")
        (e / "bin" / build.BINARY).chmod(0o755)
        (e / "build-info.json").write_text("{}")
        os.utime(e / "build-info.json", (1000 + i, 1000 + i))
        entries.append(e)
    build.set_current(tmp_path, entries[0])  # the oldest is current
    removed = build.prune(tmp_path, keep=3)
    assert sorted(removed) == sorted(entries[1:3])
    assert all(e.exists() for e in [entries[0], *entries[3:]])


def test_build_records_the_library_and_a_variant_never_becomes_current(tmp_path, stubbed,
                                                                       monkeypatch):
    """build-info.json names the linked library (what `qemu probe` and the reports
    read); `--variant` builds (the own-library QEMU of compare-libigvm) leave the
    QEMU-under-test alone."""
    tree = _tree(tmp_path, CONFIGURE_OK)
    root = tmp_path / "cache"
    quiet = lambda: build.Progress(io.StringIO())  # noqa: E731
    first = build.build(str(tree), jobs=1, root=root, progress=quiet())
    record = json.loads((first.entry / "build-info.json").read_text())
    assert record["libigvm_info"] == {"origin": "own", "version": "0.0.0", "identity": "stub-lib",
                                      "source": "stub"}
    assert libigvm.of_binary(first.binary)["origin"] == "own"
    current = (root / "qemu" / "current.json").read_text()
    monkeypatch.setattr(build.libigvm, "prepare", lambda want, root, log, progress:
                        libigvm.Libigvm("crates.io", "0.5.0", "stub-crate", None))
    variant = build.build(str(tree), jobs=1, root=root, progress=quiet(), make_current=False)
    assert variant.entry != first.entry
    assert (root / "qemu" / "current.json").read_text() == current
    assert build.current_binary(root) == first.binary
    assert libigvm.of_binary(variant.binary)["origin"] == "crates.io"
