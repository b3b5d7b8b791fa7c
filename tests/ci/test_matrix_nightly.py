"""``igvm-harness matrix run ci-examples/matrix/nightly.toml``, for real: the
example's every cell (its platforms x accelerators, the QEMU-under-test) as
its own pytest process with a short selection (``--pytest-args``), then the
merged dashboard read back."""

from __future__ import annotations

import os
import sys
import tomllib

import pytest

from harness.report import schema

from . import engines

NIGHTLY = engines.REPO / "ci-examples" / "matrix" / "nightly.toml"
SELECTION = "-n 0 suites/matrix -q -p no:cacheprovider -k page-normal"


@pytest.mark.weight(25)  # 8 cells, one after the other
def test_nightly_matrix_runs_and_merges(tmp_path):
    out = tmp_path / "nightly"
    proc = engines.run([sys.executable, "-m", "harness.cli", "matrix", "run", str(NIGHTLY),
                        "--pytest-args", SELECTION, "--output", str(out)],
                       engines.REPO, engines.clean_env(), timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:]
    spec = tomllib.loads(NIGHTLY.read_text())  # the file itself, not the harness's reading of it
    cells = {(p, a) for p in spec["platforms"] for a in spec["accels"]}
    assert f"matrix {spec['name']}: {len(cells)} cells" in proc.stdout
    dash = schema.load(out / "dashboard.json")
    assert {(c["platform"], c["accel"]) for c in dash["columns"]} == cells
    assert len(dash["runs"]) == len(cells)
    latest = {}
    for cell in dash["cells"]:
        column = next(c for c in dash["columns"] if c["id"] == cell["column"])
        assert cell["row"].endswith("page-normal/cfg"), cell["row"]
        latest[(column["platform"], column["accel"])] = cell["latest"]
    assert set(latest) == cells
    assert latest[("native", "tcg")] == latest[("native", "kvm")] == "pass"
    if not os.path.exists("/dev/sev"):  # README: without SEV, a SEV cell is never a pass
        assert all(v in ("boundary", "skip") for (p, _), v in latest.items() if p != "native")
    for platform, accel in cells:
        celldir = out / "cells" / f"under-test-{platform}-{accel}"
        assert (celldir / "run.log").is_file()
        assert list((celldir / "matrix").glob("matrix-*.json")), "each cell keeps its matrix tables"
    assert (out / "dashboard.html").is_file()
