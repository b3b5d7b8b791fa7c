"""Debian packages needed to build the QEMU-under-test, as data.

The list is the subset of Debian's own ``Build-Depends`` for ``qemu``
(debian/control of the source package) that a minimal
``x86_64-softmmu`` build with IGVM, KVM and TCG really uses; every
optional feature is switched off at configure time, so its ``-dev``
package is not needed.  meson comes from PyPI (bookworm's 1.0 is too old
for QEMU 10.x) and is therefore not a Debian package here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from harness.errors import HarnessError


@dataclass(frozen=True)
class Dep:
    package: str
    why: str


# Debian package -> why QEMU's build needs it.
BUILD_DEPS: tuple[Dep, ...] = (
    Dep("build-essential", "C compiler, make and libc headers"),
    Dep("pkgconf", "QEMU's meson finds glib, zlib and igvm through pkg-config"),
    Dep("ninja-build", "QEMU builds with ninja"),
    Dep("python3-venv", "configure creates a Python venv (mkvenv) and meson runs in it"),
    Dep("libglib2.0-dev", "glib is QEMU's only mandatory library"),
    Dep("zlib1g-dev", "mandatory for system emulators"),
    Dep("flex", "required by configure (dtc/decodetree tooling)"),
    Dep("bison", "required by configure"),
    Dep("xz-utils", "unpacks Debian's .tar.xz source tarballs"),
    Dep("patch", "applies the Debian patches the +ds tarball needs"),
)


# Not needed, used when present: ``--install-deps`` installs them, a missing one
# is never an error (harness/qemu/build.py compiler_env).
OPTIONAL_DEPS: tuple[Dep, ...] = (
    Dep("ccache", "compiler cache: a rebuild of the same QEMU (new cache key, wiped build "
                  "tree, another QEMU version sharing files) recompiles nothing unchanged"),
)


def _installed(package: str) -> bool:
    """True when dpkg reports *package* installed."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${db:Status-Abbrev}", package],
            capture_output=True, text=True, check=False,
        )
    except FileNotFoundError:  # not a dpkg system
        return False
    return out.returncode == 0 and out.stdout.startswith("ii")


def missing(deps: tuple[Dep, ...] = BUILD_DEPS, installed=_installed) -> list[str]:
    """Names of the packages in *deps* that are not installed.

    ``installed`` is injectable so tests can check the wording without
    touching dpkg.
    """
    return [d.package for d in deps if not installed(d.package)]


def missing_message(packages: list[str]) -> str:
    """One line naming the missing packages and the two ways to get them."""
    names = " ".join(packages)
    return (f"QEMU build dependencies missing: {names} "
            f"(run `apt-get install {names}` or rerun with --install-deps)")


def privileged(cmd: list[str]) -> list[str]:
    """Prefix *cmd* with ``sudo -n`` when not root (fail rather than prompt)."""
    if os.geteuid() == 0:
        return cmd
    if shutil.which("sudo"):
        return ["sudo", "-n", *cmd]
    raise HarnessError(f"`{' '.join(cmd)}` needs root and sudo is not available")


def apt_env() -> dict[str, str]:
    env = dict(os.environ)
    env["DEBIAN_FRONTEND"] = "noninteractive"
    return env


def install(packages: list[str], log=None) -> None:
    """``apt-get install`` *packages* (no-op when the list is empty)."""
    if not packages:
        return
    if not shutil.which("apt-get"):
        raise HarnessError("apt-get not found: install " + " ".join(packages) + " by hand")
    cmd = privileged(["apt-get", "install", "-y", "--no-install-recommends", *packages])
    res = subprocess.run(cmd, env=apt_env(), stdin=subprocess.DEVNULL,
                         stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT, check=False)
    if res.returncode != 0:
        # Package lists may be stale on a fresh machine: update once and retry.
        subprocess.run(privileged(["apt-get", "update"]), env=apt_env(),
                       stdin=subprocess.DEVNULL, stdout=log or subprocess.DEVNULL,
                       stderr=subprocess.STDOUT, check=False)
        res = subprocess.run(cmd, env=apt_env(), stdin=subprocess.DEVNULL,
                             stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
                             check=False)
    if res.returncode != 0:
        raise HarnessError("apt-get install failed for: " + " ".join(packages))


def ensure(install_missing: bool, log=None) -> list[str]:
    """Check the build dependencies; install them or fail with one line.

    Returns the packages that were installed.
    """
    absent = missing()
    optional = missing(OPTIONAL_DEPS) if install_missing else []
    if optional:
        try:
            install(optional, log=log)
        except HarnessError:
            pass  # optional: the build works without them
        optional = [p for p in optional if p not in missing(OPTIONAL_DEPS)]
    if not absent:
        return optional
    if not install_missing:
        raise HarnessError(missing_message(absent))
    install(absent, log=log)
    still = missing()
    if still:
        raise HarnessError(missing_message(still))
    return absent + optional
