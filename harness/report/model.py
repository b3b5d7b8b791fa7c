"""The results model every report is written from.

One :class:`Report` holds the checks of one run (a certification, a pytest
session, one cell of a matrix) together with the environment fingerprint of
the host that ran it.  The JSON form (``Report.to_dict``) is what the schema in
``schema/results-v1.schema.json`` describes; JUnit XML and the HTML page are
rendered from the same object, so the three never disagree.

Pure data: no QEMU, no pytest, no I/O.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

SCHEMA_ID = "igvm-harness/results"
SCHEMA_VERSION = 1

# Verdicts, in the order a summary shows them.  "boundary" is a status of its
# own: the check ran as far as this host allows (e.g. QEMU reached the SEV
# hardware boundary under TCG) and is never counted as a pass.  "predicted"
# likewise: a value was computed (a launch measurement) but nothing on this
# host confirmed it (no SEV firmware measured the launch).
VERDICTS = ("pass", "fail", "error", "boundary", "predicted", "skip", "xfail", "xpass")
#: Verdicts that leave a run undecided ("partial"), neither failed nor passed.
OPEN = frozenset({"skip", "boundary", "predicted"})
FAILING = frozenset({"fail", "error", "xpass"})

KINDS = ("certification", "suite", "matrix-cell")


def utc_now() -> str:
    """An ISO-8601 UTC timestamp with second precision (sortable as text)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


@dataclass
class Log:
    """A named piece of text evidence (QEMU stderr, a command line, a QMP transcript)."""

    name: str
    text: str


@dataclass
class Measurement:
    """A launch measurement, predicted and (where the host can) observed."""

    platform: str
    algorithm: str
    digest: str | None
    observed: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Evidence:
    """What a verdict rests on; every part optional."""

    logs: list[Log] = field(default_factory=list)
    console: str | None = None
    measurements: list[Measurement] = field(default_factory=list)
    command: list[str] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (self.logs or self.console or self.measurements or self.command
                    or self.details)


@dataclass
class Check:
    """One check with its verdict.  ``id`` is stable across runs and hosts
    (it keys the merged dashboard's rows)."""

    id: str
    name: str
    verdict: str
    message: str = ""
    group: str = ""
    platform: str | None = None
    directive: str | None = None
    duration_s: float = 0.0
    evidence: Evidence = field(default_factory=Evidence)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r} for check {self.id}")


@dataclass
class MatrixCell:
    """One cell of the directive x platform matrix."""

    directive: str
    platform: str
    verdict: str
    expected: str = ""
    observed: str = ""
    form: str = ""
    check: str | None = None


@dataclass
class Report:
    """One run's results."""

    kind: str
    title: str
    environment: dict[str, Any]
    checks: list[Check] = field(default_factory=list)
    matrix: list[MatrixCell] = field(default_factory=list)
    subject: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown report kind {self.kind!r}")
        self.run.setdefault("started", utc_now())

    # -- derived --------------------------------------------------------
    def counts(self) -> dict[str, int]:
        counts = {v: 0 for v in VERDICTS}
        for check in self.checks:
            counts[check.verdict] += 1
        return counts

    def verdict(self) -> str:
        """``fail`` if anything failed, ``pass`` if every check passed (expected
        failures included), otherwise ``partial`` (skips, boundaries,
        predictions nothing confirmed)."""
        counts = self.counts()
        if any(counts[v] for v in FAILING):
            return "fail"
        if not self.checks:
            return "empty"
        if any(counts[v] for v in OPEN):
            return "partial"
        return "pass"

    def summary(self) -> dict[str, Any]:
        counts = self.counts()
        return {"total": len(self.checks), **counts, "verdict": self.verdict()}

    # -- JSON -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_ID,
            "schema_version": SCHEMA_VERSION,
            "kind": self.kind,
            "title": self.title,
            "run": dict(self.run),
            "environment": self.environment,
            "subject": self.subject,
            "summary": self.summary(),
            "checks": [dataclasses.asdict(c) for c in self.checks],
            "matrix": [dataclasses.asdict(m) for m in self.matrix],
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "Report":
        """Rebuild from a document that already passed schema validation."""
        checks = []
        for c in doc.get("checks", []):
            ev = c.get("evidence") or {}
            evidence = Evidence(
                logs=[Log(**log) for log in ev.get("logs", [])],
                console=ev.get("console"),
                measurements=[Measurement(**m) for m in ev.get("measurements", [])],
                command=ev.get("command"),
                details=ev.get("details", {}),
            )
            checks.append(Check(**{**c, "evidence": evidence}))
        return cls(
            kind=doc["kind"],
            title=doc["title"],
            environment=doc["environment"],
            checks=checks,
            matrix=[MatrixCell(**m) for m in doc.get("matrix", [])],
            subject=doc.get("subject", {}),
            run=doc.get("run", {}),
        )
