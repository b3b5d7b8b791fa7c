"""Run a build command with its output copied to a log, one callback per line.

The one runner of the long builds (QEMU's configure and ninja, cargo, make):
output goes to the log as it comes, a callback sees each line (progress),
and an interrupt kills the child before it propagates.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable, TextIO

from harness.errors import HarnessError


def run(cmd: list[str], log: TextIO, cwd: Path | None = None, env: dict[str, str] | None = None,
        on_line: Callable[[str], None] | None = None, keep: bool = True) -> tuple[int, list[str]]:
    """(exit status, output lines if ``keep``); the output is also written to ``log``."""
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    lines: list[str] = []
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", bufsize=1)
    except OSError as exc:
        raise HarnessError(f"cannot run {cmd[0]}: {exc.strerror or exc}") from None
    try:
        assert proc.stdout
        for line in proc.stdout:
            log.write(line)
            if keep:
                lines.append(line.rstrip("\n"))
            if on_line:
                on_line(line)
        return proc.wait(), lines
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        log.flush()


__all__ = ["run"]
