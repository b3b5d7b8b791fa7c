"""pytest side of the reference-oracle tests: their counts, printed and written at the end.

The tests (tests/reference, tests/untrusted/test_fuzz.py) :func:`record` how
many inputs each comparison saw and how they came out; under pytest-xdist
each worker hands its counts to the controller (as the matrix plugin
does), which prints them ("reference oracle (igvm crate from crates.io)")
and writes ``reports/reference/counts.json`` (or
``$IGVM_HARNESS_REFERENCE_DIR``).  Registered by the root conftest.py and
the ``pytest11`` entry point, so that the controller has it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

COUNTS: dict[str, dict] = {}
REPO = Path(__file__).resolve().parents[2]
_KEY = "igvm_reference_counts"


def record(name: str, counts: dict) -> None:
    COUNTS[name] = dict(counts)


def pytest_sessionfinish(session):
    wo = getattr(session.config, "workeroutput", None)
    if wo is not None and COUNTS:
        wo[_KEY] = json.dumps(COUNTS)


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: absent under -p no:xdist
def pytest_testnodedown(node, error):
    raw = getattr(node, "workeroutput", {}).get(_KEY)
    if raw:
        COUNTS.update(json.loads(raw))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not COUNTS or getattr(config, "workeroutput", None) is not None:
        return
    tr = terminalreporter
    tr.section("reference oracle (igvm crate from crates.io)")
    for name in sorted(COUNTS):
        tr.write_line(f"{name}: " + ", ".join(f"{k} {v}" for k, v in COUNTS[name].items()))
    out = Path(os.environ.get("IGVM_HARNESS_REFERENCE_DIR", REPO / "reports" / "reference"))
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "counts.json").write_text(json.dumps(COUNTS, indent=1, sort_keys=True) + "\n")
        tr.write_line(f"reference counts: {out / 'counts.json'}")
    except OSError as exc:
        tr.write_line(f"reference counts not written: {exc}")
