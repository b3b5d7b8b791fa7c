"""Files the harness writes: whole or not at all.

A temporary file in the destination's directory (same file system, so the
rename is atomic), renamed into place, removed on any failure (Ctrl-C
included), so that a reader never sees half a wrap, half an initrd, half a
report or half a cache entry, the old file stays as it was, and nothing is
left behind.  Every writer of a whole file goes through :func:`write_atomic`
(the report writers, the QEMU build's ``current.json`` and stable library
copy, the probe cache, the private apt sources, the asset manifest, wraps,
initrds).

Permissions: by default those of a file ``open()`` would create (0666 less
the umask, applied by the kernel: no process-wide ``os.umask`` dance, which
races with other threads); ``mode`` sets them exactly (a copied executable
keeps its bits).
"""

from __future__ import annotations

import contextlib
import os

#: Tries at a fresh temporary name before giving up (each a 48-bit random name).
_NAME_TRIES = 100


def _create(directory: str, prefix: str) -> tuple[int, str]:
    """A new, empty temporary file in ``directory``: (descriptor, path)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(_NAME_TRIES):
        tmp = os.path.join(directory, f"{prefix}{os.urandom(6).hex()}")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name {prefix}* in {directory}")


def write_atomic(path: str | os.PathLike, data: bytes | str, prefix: str = ".tmp-",
                 mode: int | None = None) -> None:
    """Write ``data`` (``str`` as UTF-8) to ``path`` atomically; ``prefix``
    names the temporary, ``mode`` (e.g. ``0o755``) overrides the
    permissions a new file would get."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = _create(directory, prefix)
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode is not None:
                os.fchmod(fh.fileno(), mode)
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_all(files, prefix: str = ".tmp-") -> None:
    """Write every ``(path, data)`` of ``files`` with :func:`write_atomic`,
    or none: when one cannot be written (or an interrupt comes), those
    already written are removed again, and the error says which path
    failed (harness.errors.HarnessError; a CLI writing several outputs:
    wraps per platform, a CoRIM with its signature and embedded copy)."""
    from harness.errors import HarnessError
    written: list = []
    try:
        for path, data in files:
            try:
                write_atomic(path, data, prefix=prefix)
            except OSError as exc:
                raise HarnessError(f"{path}: cannot write: {exc.strerror or exc}") from None
            written.append(path)
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise
