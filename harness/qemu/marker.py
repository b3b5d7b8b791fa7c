"""Run QEMU until a console marker: real firmware never exits by itself.

OVMF sits in its boot manager (or shell) for ever, so "booted" means "a
line the firmware prints once it got there appeared on the serial console".
:func:`run_until` starts one QEMU through :class:`harness.qemu.runner.QemuRun`
(same logs, same reaping), watches the console for ``marker`` and

* quits QEMU over QMP once the marker is seen (``stop=True``; the outcome is
  then BOOTED with QEMU's exit status 0), or keeps waiting for QEMU to exit
  by itself (``stop=False``: a Linux guest that powers off);
* gives up early on ``fail`` (e.g. a kernel panic line), and on a VM that
  stopped for good (run state ``internal-error``, e.g. a KVM emulation
  failure; ``guest-panicked``), seen through the QMP STOP event;
* reports progress every ``progress_every`` seconds (the last console line)
  to ``progress`` -- a TCG boot of Linux through OVMF takes a minute.

The time to the marker is measured from just before QEMU is started.
"""

from __future__ import annotations

import re
import select
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pexpect

from harness.qemu.cmdline import QemuCommand
from harness.qemu.outcome import STOP_STATES, Outcome
from harness.qemu.runner import EVENT_SETTLE, QemuRun

#: CSI / OSC escape sequences and other control characters OVMF's terminal
#: driver writes around its text (ESC [ ... final byte; ESC ] ... BEL).
_ANSI = re.compile(rb"\x1b\[[0-9;?=]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")

Progress = Callable[[float, str], None]


def plain(text: bytes) -> str:
    """Console bytes without terminal escape sequences (for messages)."""
    return _ANSI.sub(b"", text.replace(b"\r\n", b"\n")).decode("utf-8", "replace")


@dataclass
class MarkerRun:
    """One run watched for a marker."""

    outcome: Outcome
    marker: str | None = None         # the matched text, None if never seen
    elapsed: float | None = None      # s from QEMU start to the marker
    failed_on: str | None = None      # the ``fail`` text that ended the run early

    @property
    def seen(self) -> bool:
        return self.marker is not None

    def summary(self) -> str:
        where = (f"marker {self.marker!r} after {self.elapsed:.1f} s" if self.seen
                 else f"marker not seen ({self.failed_on or 'no match'})")
        return f"{where}; {self.outcome.summary()}"


def _compile(pattern: str | re.Pattern | None) -> re.Pattern | None:
    if pattern is None:
        return None
    if isinstance(pattern, re.Pattern):
        pattern = pattern.pattern
    return re.compile(pattern.encode() if isinstance(pattern, str) else pattern)


def _last_line(buf: bytes) -> str:
    lines = [l.strip() for l in plain(buf[-2048:]).splitlines() if l.strip()]
    return lines[-1][:160] if lines else ""


def run_until(cmd: QemuCommand, run_dir: Path, marker, *, timeout: float,
              stop: bool = True, fail=None, progress: Progress | None = None,
              progress_every: float = 10.0) -> MarkerRun:
    """Run ``cmd`` until ``marker`` (a regex) appears on the console; see
    the module docstring.  QEMU is reaped and its sockets removed whatever
    happens."""
    want, bad = _compile(marker), _compile(fail)
    patterns = [p for p in (want, bad) if p is not None] + [pexpect.EOF, pexpect.TIMEOUT]
    i_want = 0 if want is not None else None
    i_bad = (1 if want is not None else 0) if bad is not None else None
    i_eof, i_timeout = len(patterns) - 2, len(patterns) - 1
    paused = cmd.pvpanic or cmd.confidential is not None
    qr = QemuRun(cmd, run_dir, timeout, paused=paused)
    result = MarkerRun(outcome=None)  # type: ignore[arg-type]
    t0 = time.monotonic()
    next_note = t0 + progress_every
    seen = [0]
    try:
        qr.start()
        qr.cont()
        while qr.console is not None and not qr.timed_out:
            step = max(0.0, min(1.0, t0 + timeout - time.monotonic()))
            try:
                idx = qr.expect(patterns, timeout=step or 0.01)
            except OSError:
                break
            now = time.monotonic()
            if idx == i_want and result.marker is None:
                result.marker = plain(qr.console.after).strip()
                result.elapsed = now - t0
                if progress:
                    progress(result.elapsed, f"marker: {result.marker}")
                if stop:
                    break
                patterns[i_want] = re.compile(b"(?!x)x")   # never again
                continue
            if idx == i_bad:
                result.failed_on = plain(qr.console.after).strip()
                break
            if idx == i_eof:
                break
            if now - t0 >= timeout:
                break
            if _stopped_for_good(qr, seen):
                break
            if progress and now >= next_note:
                next_note = now + progress_every
                progress(now - t0, _last_line(qr.console.before or b""))
        if (result.marker is not None and stop) or result.failed_on:
            try:
                qr.command("quit")
            except Exception:
                qr.kill()     # QMP gone or QEMU wedged: the process group goes
        result.outcome = qr.wait()
        return result
    finally:
        qr.kill()
        qr.cleanup()


def _stopped_for_good(qr: QemuRun, seen: list[int]) -> bool:
    """A STOP event arrived and the VM's run state is one it never leaves
    (the runner's wait() then records it and quits QEMU).  The QMP socket
    is read only when select() says it has bytes (the library parses what
    it was given; it does not read by itself), and ``seen[0]`` counts the
    events already looked at (``cont``'s reply may have brought some)."""
    if qr.qmp is None:
        return False
    fd = getattr(qr, "_qmp_fd", None)
    if fd is not None:
        try:
            ready, _, _ = select.select([fd], [], [], 0)
        except (OSError, ValueError):
            ready = []
        if ready:
            qr.collect_events(wait=EVENT_SETTLE)
    fresh, seen[0] = qr.events[seen[0]:], len(qr.events)
    if not any(e.get("event") == "STOP" for e in fresh):
        return False
    try:
        state = qr.command("query-status").get("status")
    except Exception:
        return False
    return state in STOP_STATES
