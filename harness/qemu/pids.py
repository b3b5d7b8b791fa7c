"""Is a process still running?  Shared by the build cache (stale work
directories) and the runner (stale sockets of killed workers)."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True for a running process; a zombie (killed, not yet reaped by its
    parent, e.g. a SIGKILLed xdist worker) counts as dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux ``/proc/PID/task/PID/children``);
    empty when the process is gone.  Tests use it to find the QEMU a CLI
    process started and check it is reaped."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(x) for x in fh.read().split()]
    except OSError:
        return []
