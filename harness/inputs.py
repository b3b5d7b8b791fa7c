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


def open_input(path: str | os.PathLike) -> int:
    """A read-only descriptor of the regular file ``path`` (the caller closes it).

    ``O_NONBLOCK`` makes opening a FIFO return at once instead of waiting for
    a writer; it changes nothing for a regular file.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise HarnessError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise HarnessError(f"{name}: is a directory") from None
    except OSError as exc:
        raise HarnessError(f"{name}: cannot read: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode):  # O_RDONLY opens a directory without complaint
        os.close(fd)
        raise HarnessError(f"{name}: is a directory")
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special")
        raise HarnessError(f"{name}: not a regular file ({kind})")
    return fd


def read_input(path: str | os.PathLike) -> bytes:
    """The whole content of the regular file ``path``."""
    fd = open_input(path)
    try:
        with os.fdopen(fd, "rb", closefd=True) as fh:
            return fh.read()
    except OSError as exc:
        raise HarnessError(f"{os.fspath(path)}: cannot read: {exc.strerror or exc}") from None


def read_text_input(path: str | os.PathLike, kind: str) -> str:
    """``path`` decoded as UTF-8; bytes that are not UTF-8 make the file an
    invalid ``kind`` (exit status 1), like any other malformed content."""
    data = read_input(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HarnessError(f"{os.fspath(path)}: not {kind}: not UTF-8 text "
                           f"(byte 0x{data[exc.start]:02x} at offset {exc.start})", 1) from None
