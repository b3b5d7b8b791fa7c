"""One process at a time: an exclusive ``flock(2)`` on a lock file.

The QEMU build tree, the private apt configuration (one ``apt-get update``
at a time) and the asset store (one fetch at a time) each take one.  A
flock belongs to the open file, so a holder that dies (SIGKILL included)
releases it: there is no stale lock to clean up, and a second process
waits instead of racing.
"""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created, with its directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
