"""The harness cache: where it is and what lives in it (the one owner of its layout).

Root: ``$IGVM_HARNESS_CACHE``, else ``${XDG_CACHE_HOME:-~/.cache}/igvm-harness``.
Every layer that keeps something there asks this module for its directory,
so the layout below is written down once::

    qemu/downloads/<version>/       verified Debian source package files (harness.qemu.source)
    qemu/builds/<name>/             one complete QEMU install: bin/qemu-system-x86_64,
                                    build-info.json, build.log (harness.qemu.build)
    qemu/builds/.tmp-<name>-<pid>/  a build in progress (never used as a result)
    qemu/logs/<name>.log            the log of the last attempt for <name>
    qemu/work/<src-name>/           extracted source + build tree, per source and options
    qemu/current.json               the entry ``qemu path`` / discovery use
    qemu/sources/<version>/         a source package unpacked only for reading (tests citing QEMU)
    libigvm/<identity>/             an installed igvm C library QEMU links: the crate's
                                    (crates.io) or the harness's own (harness.qemu.libigvm)
    cargo/target/                   cargo's target directory for the repository's crates
                                    (tools/igvm-c, tools/igvm-oracle; shared, so common
                                    dependencies compile once; igvm-c.native-static-libs:
                                    the staticlib's link line, as rustc last printed it)
    oracle/<key>/igvm-oracle        the reference-crate helper (harness.reference.oracle)
    tools/meson-venv/               meson (+ pycotap) from PyPI for QEMU's configure
    apt/                            the private apt configuration (harness.debian.apt)
    assets/                         Debian firmware, kernel, busybox (harness.assets)
    native/<ABI>/<key>/             the harness's C extension modules (harness.native)
    probe/                          cached capability probes of QEMU binaries
    guests/                         assembled guest payloads, initrds, boot disks
    ccache/                         ccache's store for QEMU compiles

Only ``os`` is imported at module load: ``harness.native`` (on the start-up
path of ``igvm-harness measure``) uses :func:`root_str`; :func:`root` and
:func:`path` import pathlib when first called.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

ENV = "IGVM_HARNESS_CACHE"

#: Subdirectory names (the layout above).
QEMU = "qemu"
LIBIGVM = "libigvm"
CARGO_TARGET = os.path.join("cargo", "target")
ORACLE = "oracle"
TOOLS = "tools"
APT = "apt"
ASSETS = "assets"
NATIVE = "native"
PROBE = "probe"
GUESTS = "guests"
CCACHE = "ccache"


def root_str() -> str:
    """The cache root as a string (no pathlib import)."""
    env = os.environ.get(ENV)
    if env:
        return os.path.expanduser(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "igvm-harness")


def root() -> "Path":
    from pathlib import Path

    return Path(root_str())


def path(*parts: str) -> "Path":
    """``root() / part / ...``: a directory or file of the layout."""
    return root().joinpath(*parts)


__all__ = ["ENV", "root", "root_str", "path"]
