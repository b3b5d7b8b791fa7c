"""The harness's Linux initrd: Debian's static busybox and an ``/init`` that
reports what the kernel found (``fixtures/guests/linux/init``) in the
``IGVMT`` line protocol, then powers off.

The archive is a "newc" cpio (the format the kernel unpacks: Linux
``Documentation/driver-api/early-userspace/buffer-format.rst``), written
here in Python so that no cpio tool is needed; gzip is optional (Debian's
kernels have ``CONFIG_RD_GZIP``).  It is deterministic (inode numbers in
order, mtime 0, root-owned) and cached under a key that hashes busybox, the
init script and the recipe, published with an atomic rename like the
assembly payloads (harness/guests/build.py).

``/dev/console`` is packed as a character device (5, 1): the kernel opens it
for init's stdin/stdout before anything is mounted (init/main.c
console_on_rootfs), and without it init would run with no console.
"""

from __future__ import annotations

import gzip
import hashlib
import stat
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.guests.build import SOURCE_DIR, cache_root, publish

#: Bumped when the archive layout changes meaning.
RECIPE_VERSION = 1

INIT_SCRIPT = SOURCE_DIR / "linux" / "init"

#: newc header: magic and 13 fields of 8 hex digits (buffer-format.rst).
NEWC_MAGIC = b"070701"
TRAILER = "TRAILER!!!"
#: A busybox binary larger than this is not what busybox-static ships
#: (about 2 MiB): refuse it rather than pack whatever the path names.
MAX_BUSYBOX = 16 << 20


class InitrdError(HarnessError):
    """busybox missing or unusable, or the archive could not be written."""


@dataclass(frozen=True)
class Entry:
    """One archive member: a directory, regular file, symlink or device."""

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def newc_header(ino: int, entry: Entry, nlink: int) -> bytes:
    name = entry.name.encode() + b"\0"
    fields = (ino, entry.mode, 0, 0, nlink, 0, len(entry.data), 0, 0,
              entry.rdev[0], entry.rdev[1], len(name), 0)
    head = NEWC_MAGIC + b"".join(b"%08X" % f for f in fields)
    return head + name + _pad4(len(head) + len(name))


def write_newc(entries: list[Entry]) -> bytes:
    """The cpio archive of ``entries`` (in order) plus the trailer."""
    out = bytearray()
    for ino, entry in enumerate(entries, start=1):
        nlink = 2 if stat.S_ISDIR(entry.mode) else 1
        out += newc_header(ino, entry, nlink)
        out += entry.data + _pad4(len(entry.data))
    out += newc_header(0, Entry(TRAILER, 0), 1)
    return bytes(out)


def entries(busybox: bytes, init: bytes) -> list[Entry]:
    """What the initrd holds: directories, busybox, ``/bin/sh``, ``/init``
    and the console device."""
    d = stat.S_IFDIR | 0o755
    return [
        Entry("bin", d), Entry("dev", d), Entry("proc", d), Entry("sys", d),
        Entry("tmp", stat.S_IFDIR | 0o1777), Entry("sbin", d), Entry("usr", d),
        Entry("usr/bin", d), Entry("usr/sbin", d),
        Entry("bin/busybox", stat.S_IFREG | 0o755, busybox),
        Entry("bin/sh", stat.S_IFLNK | 0o777, b"busybox"),
        Entry("init", stat.S_IFREG | 0o755, init),
        Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
    ]


def _read_busybox(path: Path) -> bytes:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InitrdError(f"busybox {path}: {exc.strerror}") from None
    if size > MAX_BUSYBOX:
        raise InitrdError(f"busybox {path}: {size} bytes is more than the"
                          f" {MAX_BUSYBOX >> 20} MiB a static busybox takes")
    data = path.read_bytes()
    if data[:4] != b"\x7fELF":
        raise InitrdError(f"busybox {path}: not an ELF executable")
    return data


def cache_key(busybox: bytes, init: bytes, compress: bool) -> str:
    h = hashlib.sha256(f"initrd recipe={RECIPE_VERSION} gzip={compress}\n".encode())
    for part in (busybox, init):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:20]


def build_initrd(busybox: Path, compress: bool = False, cache: Path | None = None,
                 init: Path = INIT_SCRIPT) -> Path:
    """Build (or reuse) the initrd for ``busybox``; returns the cached file."""
    bb = _read_busybox(Path(busybox))
    try:
        script = Path(init).read_bytes()
    except OSError as exc:
        raise InitrdError(f"init script {init}: {exc.strerror}") from None
    cache = cache or cache_root()
    suffix = ".cpio.gz" if compress else ".cpio"
    final = cache / f"initrd-{cache_key(bb, script, compress)}{suffix}"
    if final.is_file():
        return final
    archive = write_newc(entries(bb, script))
    if compress:
        archive = gzip.compress(archive, compresslevel=6, mtime=0)
    return publish(final, archive, ".initrd-", InitrdError, "the initrd")
