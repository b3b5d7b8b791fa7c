"""The conformance matrix suite's session environment.  Result collection and
the matrix printed at the end live in harness.matrix.pytest_plugin
(registered by the top-level conftest.py, so that it also works under
pytest-xdist)."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.matrix.pytest_plugin import set_meta


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
    from harness.matrix.cells import SYNTAX_CAPABILITY, collapse_absent, generate

    table = load()
    env = Env(qemu=qemu_binary, caps=qemu_caps, table=table,
              accel=pytestconfig.getoption("--accel"), guests=guests)
    chosen = pytestconfig.getoption("--platform")
    _, absent = collapse_absent(generate(table), lambda s: qemu_caps.missing(SYNTAX_CAPABILITY[s]),
                                lambda c: chosen in ("auto", c.platform))
    set_meta(pytestconfig, {"qemu": qemu_binary, "qemu_version": env.version,
                            "platform": chosen, "accel": env.accel,
                            "absent_syntaxes": [{"syntax": a.syntax, "cells": a.cells,
                                                 "reason": a.reason} for a in absent if a.cells]})
    return env
