"""Files the harness writes: whole or not at all.

A temporary file in the destination's directory, renamed into place, removed
on any failure (Ctrl-C included), so that a reader never sees half a wrap or
half an initrd and nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os


def write_atomic(path: str | os.PathLike, data: bytes, prefix: str = ".tmp-") -> None:
    """Write ``data`` to ``path`` atomically (``prefix`` names the temporary)."""
    import tempfile  # only when writing (start-up: tests/cli/test_startup.py)

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
