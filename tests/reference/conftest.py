"""Fixtures of the reference-oracle tests: the oracle (built if absent) and the counts.

The oracle is ``tools/igvm-oracle`` built by ``igvm-harness oracle build``
(set-up runs it).  When it is absent the fixture builds it (cached, under a
lock); when cargo or crates.io is missing the tests skip with that sentence
(``.ci/skip-allow.toml`` admits it only where crates.io really is
unreachable).  Each test records its counts (:func:`record_counts`); they
are printed at the end of the run and written to
``reports/reference/counts.json`` (harness.reference.pytest_counts).
"""

from __future__ import annotations

from pathlib import Path

import pytest


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
    """Printed at the end of the run (harness.reference.pytest_counts, xdist-safe)."""
    from harness.reference import pytest_counts

    pytest_counts.record(name, counts)


from tests.libigvm.conftest import igvm_check, libigvm_build  # noqa: E402,F401  (the own C library)
