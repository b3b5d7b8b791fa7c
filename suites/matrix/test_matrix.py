"""One test per matrix cell (case x platform x IGVM syntax), generated from
harness/expect/data.  Verdicts map onto pytest outcomes: pass -> passed,
fail -> failed (expected and observed text), xfail -> xfailed (known
deviation, with reference), boundary -> skipped "reached hardware boundary"
(never a pass), suite-error -> error in setup, skip -> skipped with the
missing capability.

Collection: each cell carries ``igvm_platform`` (so --platform=X deselects
the others, harness/plugin.py), and the cells of an IGVM syntax the QEMU
under test lacks collapse into one item that skips naming the capability."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.expect import verdict as V
from harness.expect.table import load
from harness.matrix.cells import SYNTAX_CAPABILITY, AbsentSyntax, collapse_absent, generate
from harness.matrix.execute import run_cell

CELLS = generate(load())


@pytest.fixture
def cell_run(request, tmp_path):
    """Runs the cell; a fixture that cannot be built errors here (setup),
    so pytest reports it as an error of the suite, not a QEMU failure."""
    cell = request.param
    if isinstance(cell, AbsentSyntax):  # before matrix_env, which needs igvm-cfg
        pytest.skip(cell.message)
    matrix_env = request.getfixturevalue("matrix_env")
    matrix_results = request.getfixturevalue("matrix_results")
    res = run_cell(cell, matrix_env, tmp_path / "cell")
    matrix_results.append(res)
    # for harness.report.pytest_collect (JSON/JUnit/HTML reports, host merging)
    verdict = {V.SUITE_ERROR: "error"}.get(res.status, res.status)
    request.node.user_properties.append(("igvm_check", {
        # the cell id (case/platform/syntax): a dashboard row is the case, its column the platform
        "id": cell.id, "name": cell.case.title,
        "verdict": verdict, "platform": cell.platform, "directive": "+".join(cell.case.header),
        "group": "matrix", "message": res.reason or res.observed,
        "evidence": {"command": res.argv or None,
                     "details": {"expected": res.expected, "observed": res.observed,
                                 "source": res.source, "reference": res.reference,
                                 "mode": res.mode, "syntax": cell.syntax}}}))
    request.node.user_properties.append(("igvm_cells", [{
        "directive": "+".join(cell.case.header) + (f"[{cell.rule}]" if cell.rule else ""),
        "platform": cell.platform, "verdict": verdict, "expected": res.expected,
        "observed": res.observed, "form": cell.case.form, "check": cell.id}]))
    if res.log_dir:
        from harness.plugin import _RUNS_KEY
        request.node.stash.setdefault(_RUNS_KEY, []).append(Path(res.log_dir))
    if res.status == V.SUITE_ERROR:
        raise RuntimeError(f"suite error in cell {cell.id}: {res.reason}")
    return res


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell_run" not in metafunc.fixturenames:
        return
    from harness.plugin import session_caps
    caps = session_caps(metafunc.config)
    chosen = metafunc.config.getoption("--platform")
    cells, absent = CELLS, []
    if caps is not None:  # without a QEMU every cell skips, naming that, instead
        cells, absent = collapse_absent(CELLS, lambda s: caps.missing(SYNTAX_CAPABILITY[s]),
                                        lambda c: chosen in ("auto", c.platform))
    params = [pytest.param(c, id=c.id, marks=[pytest.mark.igvm_platform(c.platform),
                                              pytest.mark.qemu]) for c in cells]
    # no qemu mark: its generic "lacks igvm-cfg" would hide the cell count
    params += [pytest.param(a, id=a.id, marks=pytest.mark.igvm_platform(*a.platforms))
               for a in absent]
    metafunc.parametrize("cell_run", params, indirect=True)


def test_cell(cell_run):
    r = cell_run
    where = f"\n  source: {'; '.join(r.source)}" if r.source else ""
    if r.status == V.PASS:
        assert r.expected and r.observed
        return
    if r.status == V.SKIP:
        pytest.skip(r.reason)
    if r.status == V.BOUNDARY:
        pytest.skip(f"reached hardware boundary ({r.mode}): {r.observed}")
    if r.status == V.XFAIL:
        pytest.xfail(r.reason)  # observed text and references: the matrix reports
    pytest.fail(f"{r.cell_id}\n  expected: {r.expected}\n  observed: {r.observed}"
                f"\n  {r.reason}{where}\n  logs: {r.log_dir}", pytrace=False)
