"""pytest side of the matrix report: collects every cell's result (also from
pytest-xdist workers), prints the matrix at the end of the session
(pytest_terminal_summary) and writes it as JSON and Markdown to
``$IGVM_HARNESS_MATRIX_DIR`` (default ``reports/matrix/`` in the checkout).

Registered by the top-level conftest.py so that the xdist controller, which
collects no tests and so never loads suites/matrix/conftest.py, has it too.
Inactive (prints nothing) in sessions that ran no matrix cell.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

RESULTS_KEY = pytest.StashKey[list]()
META_KEY = pytest.StashKey[dict]()
REPO = Path(__file__).resolve().parents[2]


def results(config: pytest.Config) -> list:
    return config.stash.setdefault(RESULTS_KEY, [])


def set_meta(config: pytest.Config, meta: dict) -> None:
    config.stash[META_KEY] = meta


@pytest.fixture(scope="session")
def matrix_results(pytestconfig) -> list:
    """The session's list of CellResult (read by pytest_terminal_summary)."""
    return results(pytestconfig)


def pytest_sessionfinish(session):
    """pytest-xdist worker: hand the cells' results to the controller."""
    wo = getattr(session.config, "workeroutput", None)
    res = session.config.stash.get(RESULTS_KEY, [])
    if wo is not None and res:
        wo["igvm_matrix"] = json.dumps({"meta": session.config.stash.get(META_KEY, {}),
                                        "cells": [r.as_dict() for r in res]})


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist controller: collect a worker's results."""
    raw = getattr(node, "workeroutput", {}).get("igvm_matrix")
    if not raw:
        return
    from harness.matrix.execute import CellResult
    data = json.loads(raw)
    config = node.config
    if data["meta"]:
        config.stash[META_KEY] = data["meta"]
    results(config).extend(CellResult(**d) for d in data["cells"])


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if getattr(config, "workeroutput", None) is not None:
        return  # a worker: the controller prints the matrix
    res = sorted(config.stash.get(RESULTS_KEY, []), key=lambda r: r.cell_id)
    if not res:
        return
    from harness.matrix import report
    meta = config.stash.get(META_KEY, {})
    tr = terminalreporter
    tr.section("IGVM conformance matrix")
    width = getattr(getattr(tr, "_tw", None), "fullwidth", 100)
    for line in report.terminal_lines(res, meta, verbosity=config.get_verbosity(), width=width):
        tr.write_line(line)
    out = Path(os.environ.get("IGVM_HARNESS_MATRIX_DIR", REPO / "reports" / "matrix"))
    stem = f"matrix-{meta.get('platform', 'auto')}"
    try:
        paths = report.write(res, out, stem, meta)
        tr.write_line("matrix report: " + ", ".join(str(p) for p in paths))
    except OSError as exc:
        tr.write_line(f"matrix report not written: {exc}")
