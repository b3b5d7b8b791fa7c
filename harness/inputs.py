"""Opening the files users name on the command line.

One place decides what "cannot read FILE" looks like, so that every command
(inspect, validate, measure, certify, report, matrix) and the pytest options
give the same single line.  Only regular files are inputs: a FIFO would
block ``open()`` until some writer appears (the command hangs), and a
character device such as ``/dev/zero`` never ends.
"""

from __future__ import annotations

import os
import stat

from harness.errors import HarnessError

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only
    from collections.abc import Callable


def open_input(path: str | os.PathLike) -> int:
    """A read-only descriptor of the regular file ``path`` (the caller closes it).

    ``O_NONBLOCK`` makes opening a FIFO return at once instead of waiting for
    a writer; it changes nothing for a regular file.
    """
    name = os.fspath(path)
    try:
        # stat first: open() of a Unix socket fails with ENXIO ("No such device
        # or address"), which says nothing about what the input is
        _refuse_special(name, os.stat(name).st_mode)
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise HarnessError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise HarnessError(f"{name}: is a directory") from None
    except OSError as exc:
        raise HarnessError(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:  # again on the descriptor: the path may have changed in between
        _refuse_special(name, os.fstat(fd).st_mode)
    except HarnessError:
        os.close(fd)
        raise
    return fd


#: What a non-regular input is, by its stat(2) file type.
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _refuse_special(name: str, mode: int) -> None:
    if stat.S_ISDIR(mode):  # O_RDONLY opens a directory without complaint
        raise HarnessError(f"{name}: is a directory")
    if not stat.S_ISREG(mode):
        kind = next((k for test, k in _KINDS if test(mode)), "not a file")
        raise HarnessError(f"{name}: not a regular file ({kind})")


def read_input(path: str | os.PathLike, limit: int | None = None,
               too_large: Callable[[int], str] | None = None) -> bytes:
    """The whole content of the regular file ``path``.

    ``limit``: a file of more bytes is refused before anything is read, with
    ``too_large(size)`` as the message (exit status 1: an unusable input), and
    a file that grows past its size while it is read is refused too.
    """
    name = os.fspath(path)
    fd = open_input(path)
    try:
        with os.fdopen(fd, "rb", closefd=True) as fh:
            if limit is None:
                return fh.read()
            size = os.fstat(fh.fileno()).st_size
            if size > limit:
                why = too_large(size) if too_large else f"{size} bytes is more than {limit}"
                raise HarnessError(f"{name}: {why}", 1)
            data = fh.read(size)
            if fh.read(1):
                raise HarnessError(f"{name}: the file grew while it was read", 1)
            return data
    except OSError as exc:
        raise HarnessError(f"{name}: cannot read: {exc.strerror or exc}") from None


def read_text_input(path: str | os.PathLike, kind: str) -> str:
    """``path`` decoded as UTF-8; bytes that are not UTF-8 make the file an
    invalid ``kind`` (exit status 1), like any other malformed content."""
    data = read_input(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HarnessError(f"{os.fspath(path)}: not {kind}: not UTF-8 text "
                           f"(byte 0x{data[exc.start]:02x} at offset {exc.start})", 1) from None


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in 1 MiB chunks (firmware, kernels and images
    can be large); the one digest helper of apt downloads, assets and reports."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
