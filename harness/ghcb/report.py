"""A model run judged against what the harness expects of the guest.

A run passes only when the guest did what a booting matrix cell must:
it ended through isa-debug-exit with the expected status, its console is
the ``IGVMT`` line protocol (harness.guests.protocol) reporting that same
status, and it broke no rule of the GHCB specification on the way.  Every
other end -- a termination request, a shutdown, VMEXIT_INVALID, a KVM
error, the instruction limit -- is a failure whose message names the exit
code and the section it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.ghcb.machine import RunResult
from harness.guests.protocol import GuestReport


@dataclass
class Judgement:
    passed: bool
    message: str
    report: GuestReport = field(default_factory=GuestReport)


def judge(result: RunResult, expect_status: int) -> Judgement:
    text = result.console.decode("ascii", errors="replace")
    report = GuestReport.parse(text)
    problems: list[str] = []
    if result.status != "exited":
        problems.append(f"{result.status}: {result.reason}")
    elif result.guest_status != expect_status:
        problems.append(f"the guest exited with {result.guest_status:#x}, expected {expect_status:#x}")
    if report.status != expect_status:
        problems.append(f"console reports status {report.status!r}, expected {expect_status:#x} "
                        "('IGVMT done status=...')")
    bad = [line for line in text.splitlines() if line and not line.startswith("IGVMT ")]
    if bad or (text and not text.endswith("\n")):
        problems.append(f"console is not the IGVMT line protocol: {(bad or [text[-40:]])[0]!r}")
    problems += [f"finding {f.line()}" for f in result.findings]
    if problems:
        return Judgement(False, "; ".join(problems), report)
    return Judgement(True, f"guest reported done status={expect_status:#x}, QEMU exits "
                     f"{result.exit_status}; {result.counts_line()}", report)


def render(result: RunResult, judgement: Judgement | None = None) -> str:
    """The text ``igvm-harness guest check`` prints."""
    out = [f"platform: {result.platform}", f"end: {result.status}: {result.reason}",
           result.counts_line()]
    for key, n in sorted(result.exits.items()):
        out.append(f"  {n:6d}  {key}")
    if result.console:
        out.append("console:")
        out += ["  " + line for line in result.console.decode("ascii", "replace").splitlines()]
    for f in result.findings:
        out.append(f"finding: {f.line()}")
    for line in result.log:
        out.append(f"note: {line}")
    if judgement is not None:
        out.append(("PASS: " if judgement.passed else "FAIL: ") + judgement.message)
    return "\n".join(out)
