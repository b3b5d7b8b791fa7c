"""What happened to one QEMU run, and the rules that decide it.

* BOOTED   -- guest code ran (it wrote to the console); carries its report;
* ABORTED  -- QEMU exited before the guest ran: exit status + QEMU's error line;
* CRASHED  -- QEMU died of a signal (or dumped core);
* HUNG     -- the deadline passed: the harness killed QEMU; console tail kept;
* BOUNDARY -- QEMU stopped at a hardware boundary it cannot cross here
              (e.g. TCG asked for a confidential guest): the conformance
              matrix counts this as "reached the boundary", not a failure;
* STOPPED  -- QEMU paused the VM for good (run state ``guest-panicked`` or
              ``internal-error``, seen through the QMP STOP event and
              ``query-status``): the runner quit QEMU at once instead of
              waiting for the deadline.  Carries the run state.

Why STOPPED exists (QEMU 10.2 sources):

* guest panic: hw/misc/pvpanic.c handle_event -> system/runstate.c
  qemu_system_guest_panicked, which with ``-action panic=pause``
  (system/runstate-action.c; the default is ``shutdown``, qemu-options.hx)
  sends GUEST_PANICKED (action ``pause``) and calls
  ``vm_stop(RUN_STATE_GUEST_PANICKED)``;
* SEV-ES/SNP termination request (GHCB MSR protocol, AMD GHCB spec): KVM
  exits with KVM_EXIT_SYSTEM_EVENT / KVM_SYSTEM_EVENT_SEV_TERM.
  accel/kvm/kvm-all.c kvm_cpu_exec handles SHUTDOWN, RESET and CRASH only
  and passes other types to target/i386/kvm/kvm.c kvm_arch_handle_exit,
  whose KVM_EXIT_SYSTEM_EVENT switch knows only KVM_SYSTEM_EVENT_TDX_FATAL
  and returns -1 without a message; kvm_cpu_exec then prints the register
  dump (cpu_dump_state to stderr) and calls
  ``vm_stop(RUN_STATE_INTERNAL_ERROR)``: QEMU stays alive, paused, in
  ``internal-error``.  This path needs SEV-ES/SNP hardware; here only the
  panic path is exercised for real (tests/runner/test_runner.py).
"""

from __future__ import annotations

import bisect
import json
import re
import signal
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from harness.guests.protocol import GuestReport
from harness.terminal import plain


class Status(str, Enum):
    BOOTED = "BOOTED"
    ABORTED = "ABORTED"
    CRASHED = "CRASHED"
    HUNG = "HUNG"
    BOUNDARY = "BOUNDARY"
    STOPPED = "STOPPED"


#: QMP run states (qapi/run-state.json RunState) in which a stopped VM never
#: resumes by itself: the runner ends the run when QEMU enters one.
STOP_STATES = ("guest-panicked", "internal-error")


#: stderr patterns meaning "stopped at a hardware boundary", with sources.
BOUNDARY_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"accelerator does not support confidential guest",
     "system/vl.c: TCG has no confidential-guest support"),
    (r"SEV: Failed to open /dev/sev|Failed to open /dev/sev",
     "target/i386/sev.c sev_common_kvm_init: no SEV firmware device"),
    (r"SEV is not enabled in KVM", "target/i386/sev.c: kvm_amd has sev=0"),
    (r"KVM not enabled", "target/i386/sev.c: SEV needs KVM"),
    (r"host kernel does not support (the )?requested", "target/i386/sev.c: VM type missing"),
    (r"cbitpos check failed", "target/i386/sev.c: host C-bit differs"),
    (r"cannot set up private guest memory for .*: KVM required",
     "system/physmem.c: guest_memfd (SEV-SNP) needs KVM"),
    (r"vm-type \S+ not supported by KVM", "target/i386/kvm/kvm.c: host KVM lacks the VM type"),
)


def qemu_error_line(stderr: str, prog: str = "qemu-system-") -> str | None:
    """QEMU's own error: the first non-warning ``<prog>: ...`` line (QEMU's
    error_report prefixes the program name), else the first other line."""
    lines = [l.strip() for l in stderr.splitlines() if l.strip()]
    errors = [l for l in lines if "warning:" not in l]
    for line in errors:
        if line.startswith(prog):
            return line
    return errors[0] if errors else (lines[0] if lines else None)


def boundary_line(stderr: str) -> str | None:
    for line in stderr.splitlines():
        for pattern, _source in BOUNDARY_PATTERNS:
            if re.search(pattern, line):
                return line.strip()
    return None


@dataclass
class Outcome:
    status: Status
    exit_code: int | None = None      # QEMU's exit status; None when killed by a signal
    signal: int | None = None
    error: str | None = None
    console: str = ""
    report: GuestReport = field(default_factory=GuestReport)
    run_dir: Path | None = None
    duration: float = 0.0
    argv: list[str] = field(default_factory=list)
    prelaunch: dict = field(default_factory=dict)
    run_state: str | None = None      # QMP run state when the VM stopped for good
    events: list = field(default_factory=list)   # every QMP event, as QEMU sent it
    matched: str | None = None        # console text that matched the run's ``until``
    matched_at: float | None = None   # s from QEMU's start to that text
    failed_on: str | None = None      # console text that matched the run's ``fail``
    qmp_at: float | None = None       # s from QEMU's start to its QMP greeting (machine built)
    cpu_seconds: float | None = None  # QEMU's user + system CPU time (runner: reaped children)
    #: ``(console characters so far, s from QEMU's start)`` per console read
    #: (harness.qemu.console ConsoleLog.arrivals), for :meth:`first_at`
    arrivals: list = field(default_factory=list, repr=False)

    @property
    def guest_status(self) -> int | None:
        """The status the guest wrote to isa-debug-exit: QEMU exits with
        (value << 1) | 1 (hw/misc/debugexit.c)."""
        if self.exit_code is None or self.exit_code % 2 == 0 or not self.report.done:
            return None
        return self.exit_code >> 1

    def first_at(self, pattern) -> float | None:
        """Seconds from QEMU's start to the console read that brought the
        first match of ``pattern`` (a regex), or None: when the record shows
        a line, not only whether (one boot answers several checks)."""
        found = re.search(pattern, self.console)
        if found is None:
            return None
        i = bisect.bisect_right(self.arrivals, (found.start(), float("inf")))
        return self.arrivals[i][1] if i < len(self.arrivals) else None

    @property
    def guest_seconds(self) -> float | None:
        """Seconds the guest had: from the machine's set-up (QMP greeting)
        to the end of the run."""
        return None if self.qmp_at is None else max(0.0, self.duration - self.qmp_at)

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.console.splitlines()[-lines:])

    def summary(self) -> str:
        bits = [self.status.value]
        if self.exit_code is not None:
            bits.append(f"exit={self.exit_code}")
        if self.signal is not None:
            bits.append(f"signal={signal.Signals(self.signal).name}")
        if self.error:
            bits.append(self.error)
        if self.matched is not None:
            after = f" after {self.matched_at:.1f} s" if self.matched_at is not None else ""
            bits.append(f"marker {plain(self.matched).strip()!r}{after}")
        if self.run_dir:
            bits.append(f"logs: {self.run_dir}")
        return " | ".join(bits)

    def to_json(self) -> dict:
        return {"status": self.status.value, "exit_code": self.exit_code,
                "signal": self.signal, "error": self.error, "duration": self.duration,
                "argv": self.argv, "guest_status": self.guest_status,
                "records": [r.line for r in self.report], "prelaunch": self.prelaunch,
                "run_state": self.run_state, "events": self.events, "matched": self.matched,
                "matched_at": self.matched_at, "failed_on": self.failed_on,
                "qmp_at": self.qmp_at, "cpu_seconds": self.cpu_seconds}

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1, default=str))


def classify(*, returncode: int | None, timed_out: bool, console: str, stderr: str,
             timeout: float | None = None,
             run_state: str | None = None,
             matched: str | None = None,
             failed_on: str | None = None) -> tuple[Status, str | None]:
    """The status of a finished (or killed) run, with its reason line.
    ``run_state`` is the QMP run state of a VM the runner saw stop for good
    (then QEMU was quit by the runner, so its exit status says nothing);
    ``matched``: the console showed what the caller waited for, and the
    runner ended QEMU there (its exit status says nothing either);
    ``failed_on``: the console showed the caller's failure pattern, and the
    runner ended QEMU there (the guest ran: BOOTED, with that line)."""
    if run_state in STOP_STATES:
        line = qemu_error_line(stderr)
        return Status.STOPPED, (f"QEMU stopped the VM: run state '{run_state}'"
                                + (f"; QEMU: {line}" if line else ""))
    if failed_on is not None:
        return Status.BOOTED, f"the console showed the failure line {plain(failed_on).strip()!r}"
    if matched is not None:
        return Status.BOOTED, None
    if timed_out:
        return Status.HUNG, f"no exit within {timeout:g} s; QEMU killed" if timeout else "hung"
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name
        return Status.CRASHED, f"QEMU killed by {name}"
    line = boundary_line(stderr)
    if line:
        return Status.BOUNDARY, line
    if console.strip():
        return Status.BOOTED, None
    if returncode == 0:
        # QEMU exits 0 only for a shutdown it was asked for; the harness
        # sends "quit" only after a stop (handled above), and -no-reboot turns a guest reset (triple
        # fault) into a shutdown: the guest ran but wrote nothing.
        return Status.BOOTED, "guest reset or shut down before writing anything (QEMU exit 0)"
    err = qemu_error_line(stderr)
    return Status.ABORTED, err or f"QEMU exited with status {returncode} before the guest wrote anything"
