"""One boot, many checks: the boots of one test session, each done once.

A real firmware or Linux boot under TCG costs seconds; several checks often
need the very same boot (the boot manager a wrap reaches, and the same
boot compared with ``-bios``).  :class:`BootRecords` runs a boot the first
time it is asked for and hands every later asker the same
:class:`~harness.qemu.outcome.Outcome` -- console log, QMP events, exit
status, timings (``first_at`` answers when any line appeared) -- as
QEMU's own functional tests check many things in one boot.

Honesty rules:

* the key is everything that decides the run: the QEMU binary and its whole
  command line (the QMP socket and console pipe paths aside, which the
  runner makes up per run), the SHA-256 of the IGVM / ``-bios`` file, and how the
  run is watched and answered (marker, failure pattern, stop at the marker,
  deadline, keys typed at prompts).
  A check that needs another command line gets its own boot;
* records live in memory, in one process, for one session: nothing is
  written anywhere for a later run to reuse, so a verdict is never taken
  from an earlier session.  (Under pytest-xdist each worker has its own;
  the suites put the checks that share a boot into one ``xdist_group``.)
* runs with a pre-launch hook (QMP queries before ``cont``) are never
  shared: the hook is code, and code is no key.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Callable

from harness.qemu import runner
from harness.qemu.cmdline import QemuCommand
from harness.qemu.console import ConsolePattern
from harness.qemu.outcome import Outcome

def _pattern_key(pattern: ConsolePattern | None):
    if pattern is None or isinstance(pattern, str):
        return pattern
    return (pattern.pattern, pattern.flags)


def _file_digest(path: str | None) -> str | None:
    if path is None:
        return None
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:           # QEMU will say so; the key just names the error
        return f"unreadable: {exc.strerror}"
    return h.hexdigest()


def boot_key(cmd: QemuCommand, timeout: float, until: ConsolePattern | None,
             fail: ConsolePattern | None, stop: bool,
             answers: tuple[tuple[ConsolePattern, bytes], ...] = ()) -> tuple:
    """What decides a run (see the module docstring)."""
    plain = dataclasses.replace(cmd, qmp_path=None, console_path=None, paused=True,
                                exit_with_parent=False, extra=list(cmd.extra))
    return (tuple(plain.argv()), _file_digest(cmd.igvm), _file_digest(cmd.bios),
            _pattern_key(until), _pattern_key(fail), bool(stop), float(timeout),
            tuple((_pattern_key(p), keys) for p, keys in answers))


class BootRecords:
    """The boots of one session (see the module docstring)."""

    def __init__(self) -> None:
        self._done: dict[tuple, Outcome] = {}
        self.fresh = 0
        self.shared = 0

    def run(self, cmd: QemuCommand, new_run_dir: Callable[[], Path], timeout: float, *,
            until: ConsolePattern | None = None, fail: ConsolePattern | None = None,
            stop: bool = True, progress: runner.Progress | None = None,
            answers: tuple[tuple[ConsolePattern, bytes], ...] = ()) -> Outcome:
        """The record of this boot: run now (logs in ``new_run_dir()``) or
        the one an earlier check of this session ran."""
        key = boot_key(cmd, timeout, until, fail, stop, answers)
        out = self._done.get(key)
        fresh = out is None
        if fresh:
            out = runner.run(cmd, new_run_dir(), timeout, until=until, fail=fail, stop=stop,
                             progress=progress, answers=answers)
            self._done[key] = out
            self.fresh += 1
        else:
            self.shared += 1
            runner.notify(out, False)    # (a fresh run told the observers itself)
        return out

    def __len__(self) -> int:
        return len(self._done)
