"""Fixtures of the reference-oracle tests: the oracle (built if absent) and the counts.

The oracle is ``tools/igvm-oracle`` built by ``igvm-harness oracle build``
(set-up runs it).  When it is absent the fixture builds it (cached, under a
lock); when cargo or crates.io is missing the tests skip with that sentence
(``.ci/skip-allow.toml`` admits it only where crates.io really is
unreachable).  Each test adds its counts to :data:`COUNTS`; they are printed
at the end of the run ("reference oracle: ...") and written to
``reports/reference/counts.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

COUNTS: dict[str, dict] = {}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def oracle_binary() -> Path:
    from harness import cargo
    from harness.errors import HarnessError
    from harness.reference import oracle

    path, line = oracle.status()
    if path is not None:
        return path
    try:
        return oracle.build()
    except cargo.Unavailable as exc:
        pytest.skip(f"no reference oracle: {exc}")
    except HarnessError as exc:  # a build that fails with the registry there is a bug
        pytest.fail(f"the reference oracle does not build: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def oracle_version(oracle_binary) -> str:
    from harness.reference import oracle

    return (oracle.record() or {}).get("igvm") or "?"


def record_counts(name: str, counts: dict) -> None:
    COUNTS[name] = counts


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not COUNTS or getattr(config, "workeroutput", None) is not None:
        return
    tr = terminalreporter
    tr.section("reference oracle (igvm crate from crates.io)")
    for name, c in COUNTS.items():
        tr.write_line(f"{name}: " + ", ".join(f"{k} {v}" for k, v in c.items()))
    out = Path(os.environ.get("IGVM_HARNESS_REFERENCE_DIR", REPO / "reports" / "reference"))
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "counts.json").write_text(json.dumps(COUNTS, indent=1) + "\n")
    except OSError as exc:
        tr.write_line(f"counts not written: {exc}")


from tests.libigvm.conftest import igvm_check, libigvm_build  # noqa: E402,F401  (the own C library)
