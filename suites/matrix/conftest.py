"""The conformance matrix suite: session environment, result collection and
the matrix printed at the end of the run (pytest_terminal_summary), also
written as JSON and Markdown to ``$IGVM_HARNESS_MATRIX_DIR`` (default
``reports/matrix/`` in the checkout)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.errors import HarnessError

_RESULTS = pytest.StashKey[list]()
_META = pytest.StashKey[dict]()
REPO = Path(__file__).resolve().parents[2]


def results(config: pytest.Config) -> list:
    return config.stash.setdefault(_RESULTS, [])


@pytest.fixture(scope="session")
def matrix_results(pytestconfig) -> list:
    """The session's list of CellResult (read by pytest_terminal_summary)."""
    return results(pytestconfig)


@pytest.fixture(scope="session")
def matrix_env(pytestconfig, qemu_binary, qemu_caps):
    """QEMU under test, its probe, the expectation table and the payloads.
    A payload that cannot be built leaves ``guests`` empty: every cell then
    reports a suite error (its fixture cannot be built)."""
    from harness.expect.table import load
    from harness.matrix.execute import Env
    from harness.matrix.guests import guest_images

    try:
        guests = guest_images()
    except HarnessError:
        guests = {}
    env = Env(qemu=qemu_binary, caps=qemu_caps, table=load(),
              accel=pytestconfig.getoption("--accel"), guests=guests)
    pytestconfig.stash[_META] = {"qemu": qemu_binary, "qemu_version": env.version,
                                 "platform": pytestconfig.getoption("--platform"),
                                 "accel": env.accel}
    return env


def pytest_sessionfinish(session):
    """pytest-xdist worker: hand the cells' results to the controller."""
    wo = getattr(session.config, "workeroutput", None)
    if wo is not None:
        wo["igvm_matrix"] = json.dumps({"meta": session.config.stash.get(_META, {}),
                                        "cells": [r.as_dict() for r in results(session.config)]})


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
        config.stash[_META] = data["meta"]
    results(config).extend(CellResult(**d) for d in data["cells"])


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if getattr(config, "workeroutput", None) is not None:
        return  # a worker: the controller prints the matrix
    res = sorted(config.stash.get(_RESULTS, []), key=lambda r: r.cell_id)
    if not res:
        return
    from harness.matrix import report
    meta = config.stash.get(_META, {})
    tr = terminalreporter
    tr.section("IGVM conformance matrix")
    for line in report.terminal_lines(res, meta):
        tr.write_line(line)
    out = Path(os.environ.get("IGVM_HARNESS_MATRIX_DIR", REPO / "reports" / "matrix"))
    stem = f"matrix-{meta.get('platform', 'auto')}"
    try:
        paths = report.write(res, out, stem, meta)
        tr.write_line("matrix report: " + ", ".join(str(p) for p in paths))
    except OSError as exc:
        tr.write_line(f"matrix report not written: {exc}")
