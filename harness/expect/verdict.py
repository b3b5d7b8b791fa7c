"""Turn an observed QEMU run into a verdict against an expectation.

Two steps, both pure functions so that they are tested without QEMU:

* :func:`effective` maps a documented expectation (and its deviation) to what
  can be seen on this host: under the TCG fallback for an SEV platform, an
  expectation decided at a stage QEMU never reaches without the hardware
  becomes "reached hardware boundary" with the platform's boundary error;
* :func:`judge` compares an :class:`Observed` run with that;
* :func:`predict` answers the same question for a file that is not run
  construct by construct (a vendor image in the certification profile):
  what QEMU does with one construct, from the same expectation and its
  recorded deviation.

Verdicts: ``pass`` (observed what the documentation says), ``fail`` (both
texts shown), ``xfail`` (observed what a recorded deviation says),
``boundary`` (QEMU stopped at the hardware boundary as predicted; never a
pass), ``suite-error`` (the harness could not build or run the cell) and
``skip`` (the cell cannot run here; reason given).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from harness.expect.table import Boundary, Expectation

PASS, FAIL, XFAIL, BOUNDARY, SUITE_ERROR, SKIP = (
    "pass", "fail", "xfail", "boundary", "suite-error", "skip")
VERDICTS = (PASS, FAIL, XFAIL, BOUNDARY, SUITE_ERROR, SKIP)

#: Run classifications (the runner's vocabulary, harness.qemu.outcome).
BOOTED, ABORTED, CRASHED, HUNG = "BOOTED", "ABORTED", "CRASHED", "HUNG"

#: QEMU's exit status for an error reported through error_fatal / exit(1).
QEMU_ERROR_EXIT = 1


@dataclass
class Observed:
    """One QEMU run as the matrix sees it (adapted from the runner's Outcome).

    ``booted_ok`` is True when the guest reported success in its own words
    (its report line and exit code), not merely when QEMU kept running.
    """

    kind: str
    exit_status: int | None = None
    error_line: str = ""
    stderr: str = ""
    report: dict[str, str] = field(default_factory=dict)
    booted_ok: bool = False
    console_tail: str = ""
    log_dir: str | None = None
    detail: str = ""

    def evidence(self) -> str:
        """One line saying what was seen (QEMU's error line or guest report)."""
        if self.kind == BOOTED:
            keys = [k for k in self.report
                    if k.startswith(("done.", "ghcb.")) or k in ("boot.mode", "boot.io_mode")]
            rep = " ".join(f"{k}={self.report[k]}" for k in keys)
            more = len(self.report) - len(keys)
            rep += f" (+{more} more fields)" if more > 0 else ""
            return f"guest booted{' (reported success)' if self.booted_ok else ''}: {rep}".strip()
        if self.kind == ABORTED:
            return f"QEMU exited {self.exit_status}: {self.error_line or '(no error line)'}"
        if self.kind == CRASHED:
            return f"QEMU crashed: {self.detail or self.exit_status}"
        if self.kind == HUNG:
            return f"hung (killed at deadline); console tail: {self.console_tail[-200:]!r}"
        return f"{self.kind}: {self.detail}"


@dataclass(frozen=True)
class Effective:
    """An expectation as observable on this host."""

    outcome: str  # boots | aborts | boundary
    error: str | None
    stage: str
    source: tuple[str, ...]

    def describe(self) -> str:
        if self.outcome == "boots":
            return "guest boots and reports success"
        if self.outcome == "loads":
            return "QEMU loads the file and runs the guest (no refusal, no crash)"
        if self.outcome == "boundary":
            return f"reached hardware boundary (QEMU stops with /{self.error}/)"
        return f"QEMU aborts (exit {QEMU_ERROR_EXIT}) with /{self.error}/ at stage {self.stage}"


@dataclass
class Verdict:
    status: str
    expected: str
    observed: str
    reason: str = ""
    source: tuple[str, ...] = ()
    reference: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "expected": self.expected, "observed": self.observed,
                "reason": self.reason, "source": list(self.source),
                "reference": list(self.reference)}


def effective(outcome: str, error: str | None, stage: str, source: tuple[str, ...],
              boundary: Boundary | None) -> Effective:
    """What can be observed of an outcome decided at ``stage`` when QEMU
    runs only up to ``boundary`` (None: the run goes to the end)."""
    if boundary is not None and stage not in boundary.observable:
        return Effective("boundary", boundary.error, stage, boundary.source)
    return Effective(outcome, error, stage, source)


def effective_pair(exp: Expectation, boundary: Boundary | None,
                   qemu_version: str | None = None) -> tuple[Effective, Effective | None]:
    """The documented expectation and its (version-matching) deviation."""
    doc = effective(exp.outcome, exp.error, exp.stage, exp.source, boundary)
    dev = None
    d = exp.deviation
    if d is not None:
        from harness.expect.versions import in_range
        if qemu_version is None or in_range(qemu_version, d.qemu):
            dev = effective(d.outcome, d.error, d.stage, d.reference, boundary)
    return doc, dev


def matches(eff: Effective, obs: Observed) -> bool:
    """Does the observed run show what ``eff`` predicts?"""
    if eff.outcome == "boots":
        return obs.kind == BOOTED and obs.booted_ok
    if eff.outcome == "loads":
        return obs.kind in (BOOTED, HUNG, "STOPPED")  # STOPPED: guest ran, VM paused for good
    if obs.kind != ABORTED or obs.exit_status != QEMU_ERROR_EXIT:
        return False
    text = obs.stderr or obs.error_line
    return bool(eff.error) and re.search(eff.error, text) is not None


def judge(doc: Effective, dev: Effective | None, obs: Observed,
          dev_reason: str = "") -> Verdict:
    """The verdict for one cell.  CRASHED is never expected; HUNG only
    where the expectation (or deviation) is 'loads'."""
    seen = obs.evidence()
    if obs.kind == CRASHED or (obs.kind == HUNG and "loads" not in
                               (doc.outcome, dev.outcome if dev else None)):
        return Verdict(FAIL, doc.describe(), seen, f"QEMU {obs.kind.lower()}", doc.source)
    if matches(doc, obs):
        status = BOUNDARY if doc.outcome == "boundary" else PASS
        reason = ("reached hardware boundary: the expectation is decided at stage "
                  f"'{doc.stage}', beyond what QEMU reaches without the hardware"
                  if status == BOUNDARY else "")
        return Verdict(status, doc.describe(), seen, reason, doc.source)
    if dev is not None and matches(dev, obs):
        return Verdict(XFAIL, doc.describe(), seen,
                       f"known deviation: {dev_reason}".strip(), doc.source, dev.source)
    return Verdict(FAIL, doc.describe(), seen,
                   "observed behaviour differs from the expectation", doc.source,
                   dev.source if dev else ())


@dataclass(frozen=True)
class Prediction:
    """What QEMU does with one construct, by the expectation data alone.

    ``accepted``: QEMU goes on with the file (outcome ``boots`` or ``loads``).
    ``status`` uses the matrix's words: ``pass`` where QEMU behaves as
    documented and accepts, ``fail`` where it refuses, ``xfail`` where a
    recorded deviation (QEMU's code against its documentation) decides and
    QEMU accepts.  ``expected`` is the documented behaviour, ``predicted``
    what QEMU's code does."""

    accepted: bool
    status: str
    expected: str
    predicted: str
    reason: str = ""
    source: tuple[str, ...] = ()
    reference: tuple[str, ...] = ()


def predict(exp: Expectation, qemu_version: str | None = None) -> Prediction:
    """The prediction for one expectation at ``qemu_version`` (None: any).

    A deviation valid for the version is what QEMU's code does, so it
    decides (the matrix observes it as xfail); otherwise the documented
    expectation does.  No boundary applies: the question is what QEMU does
    with the construct when it runs the file to the end."""
    doc, dev = effective_pair(exp, None, qemu_version)
    code = dev or doc
    accepted = code.outcome in ("boots", "loads")
    reason = ""
    if dev is not None:
        reason = (f"known deviation: {exp.deviation.reason}" if exp.deviation else
                  "known deviation")
    if accepted:
        status = XFAIL if dev is not None and doc.outcome == "aborts" else PASS
    else:
        status = FAIL
    return Prediction(accepted=accepted, status=status, expected=doc.describe(),
                      predicted=code.describe(), reason=reason, source=doc.source,
                      reference=dev.source if dev else ())
