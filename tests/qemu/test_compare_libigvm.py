"""The cell-by-cell comparison of ``igvm-harness qemu compare-libigvm``, on real matrix JSON.

``data/matrix-real-excerpt.json`` is 14 cells of a real matrix report (the
suite on the QEMU-under-test linked with the igvm crate, QEMU 10.2.2, this
kind of host): passes, known deviations, hardware boundaries, and QEMU's
"Unable to parse IGVM file <path>: <code>" lines with the run's temporary
paths.  The "own library" side is the same report written again through the
matrix's own writer (harness.matrix.report.write) from CellResults, with the
temporary paths of another run; then single cells are changed the way a
differing library would change them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.matrix import report
from harness.matrix.execute import CellResult
from harness.qemu import compare_libigvm as cmp

REAL = json.loads((Path(__file__).parent / "data" / "matrix-real-excerpt.json").read_text())


def _rewritten(tmp_path: Path, change=None) -> dict:
    """REAL as a second run writes it: other temporary paths, through the matrix writer."""
    results = []
    for c in copy.deepcopy(REAL["cells"]):
        for key in ("observed", "error_line", "log_dir"):
            if c.get(key):
                c[key] = c[key].replace("/tmp/pytest-of-root/pytest-", "/tmp/pytest-of-ci/pytest-9")
        if change:
            change(c)
        results.append(CellResult(**c))
    paths = report.write(results, tmp_path, "matrix-own", REAL["meta"])
    return json.loads(next(p for p in paths if p.suffix == ".json").read_text())


def test_same_report_from_another_run_has_no_difference(tmp_path):
    own = _rewritten(tmp_path)
    assert own["cells"][0]["error_line"] != REAL["cells"][0]["error_line"]  # paths differ
    c = cmp.compare(REAL, own)
    assert c.compared == len(REAL["cells"]) == 14 and c.differing_cells == 0
    assert not c.only_real and not c.only_own and not c.unexplained


def test_a_different_library_code_is_a_difference(tmp_path):
    def other_code(c):
        if c["cell_id"] == "header-unknown-type/native/cfg":
            c["error_line"] = c["error_line"].replace(": -11", ": -17")
    c = cmp.compare(REAL, _rewritten(tmp_path, other_code))
    assert c.differing_cells == 1
    d = c.differing[0]
    assert (d.cell_id, d.field) == ("header-unknown-type/native/cfg", "error_line")
    # shown without the run's paths
    assert d.real == "qemu-system-x86_64: Unable to parse IGVM file <tmp>: -11"
    assert d.own == "qemu-system-x86_64: Unable to parse IGVM file <tmp>: -17"
    assert any("1 differing (1 unexplained)" in line for line in cmp.render(c, "a", "b"))


def test_a_different_verdict_and_a_known_reason(tmp_path):
    def boundary_to_fail(c):
        if c["cell_id"] == "file-missing/sev-snp/cfg":
            c["status"] = "fail"
    c = cmp.compare(REAL, _rewritten(tmp_path, boundary_to_fail))
    assert [(d.cell_id, d.field, d.real, d.own) for d in c.differing] == [
        ("file-missing/sev-snp/cfg", "status", "boundary", "fail")]
    known = cmp.compare(REAL, _rewritten(tmp_path, boundary_to_fail),
                        known={"file-missing/sev-snp/cfg": "a reason"})
    assert known.differing_cells == 1 and not known.unexplained


def test_cells_missing_on_one_side_are_listed(tmp_path):
    own = _rewritten(tmp_path)
    own["cells"] = own["cells"][1:]
    c = cmp.compare(REAL, own)
    assert c.only_real == [REAL["cells"][0]["cell_id"]] and c.compared == 13


def test_not_a_matrix_report():
    with pytest.raises(HarnessError, match="not a matrix report"):
        cmp.compare(REAL, {"schema": "x"})


def test_normalize_takes_out_temporary_paths_only():
    line = ("qemu-system-x86_64: Unable to parse IGVM file /tmp/pytest-of-root/pytest-26/"
            "t0/cell/x.igvm: -11")
    assert cmp.normalize(line) == "qemu-system-x86_64: Unable to parse IGVM file <tmp>: -11"
    assert cmp.normalize("Failed to open file \u201c/tmp/a/b.igvm\u201d: No such file") == \
        "Failed to open file \u201c<tmp>\u201d: No such file"
