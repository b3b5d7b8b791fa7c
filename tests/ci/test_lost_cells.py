"""``igvm-harness report lost-cells``: a CI cell that wrote no results keeps
its dashboard column, as an error naming its job (harness/report/lost.py)."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.report import lost, merge, schema

MARKER = ("platform=sev-es\naccel=tcg\nlabel=nightly sev-es/tcg\njob=native: [sev-es,tcg]\n"
          "host=lab-a\nurl=https://ci.example/job/7\n")


def _marker(directory, text=MARKER):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cell.txt").write_text(text)
    return directory / "cell.txt"


def test_a_cell_without_results_gets_an_error_column(tmp_path, capsys):
    path = _marker(tmp_path / "native-sev-es-tcg")
    assert main(["report", "lost-cells", str(path)]) == 0
    assert "cell sev-es/tcg (native: [sev-es,tcg]) wrote no results" in capsys.readouterr().out
    [doc_path] = path.parent.glob("suite-*.json")
    doc = schema.load(doc_path)
    assert doc["summary"]["verdict"] == "fail" and doc["summary"]["error"] == 1
    assert "https://ci.example/job/7" in doc["checks"][0]["message"]
    assert list(path.parent.glob("suite-*.html")) and list(path.parent.glob("suite-*.xml"))
    dash = merge.merge_files([doc_path])
    [column] = dash["columns"]
    assert (column["hostname"], column["accel"], column["platform"]) == ("lab-a", "tcg", "sev-es")
    assert dash["summary"]["verdict"] == "fail"


def test_a_cell_with_results_is_left_alone(tmp_path):
    path = _marker(tmp_path / "cell")
    (path.parent / "suite-sev-es-20261121T020000Z.json").write_text("{}")
    assert lost.write_lost([path]) == []
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "cell.txt", "suite-sev-es-20261121T020000Z.json"]


@pytest.mark.parametrize("text, match", [
    ("platform=sev\n", "names no accel"),
    ("platform=sev\naccel=tcg\nrm -rf /\n", "not a cell marker line"),
    ("platform=sev\naccel=tcg\nshell=bash\n", "not a cell marker line"),
    ("x=" + "a" * 5000, "not a cell marker"),
])
def test_bad_markers_are_one_clear_error(tmp_path, text, match):
    path = _marker(tmp_path / "cell", text)
    with pytest.raises(HarnessError, match=match):
        lost.write_lost([path])
    assert list(path.parent.iterdir()) == [path]  # nothing written


def test_only_marker_files_are_taken(tmp_path):
    other = tmp_path / "dashboard.json"
    other.write_text("{}")
    with pytest.raises(HarnessError, match="not a cell marker"):
        lost.write_lost([other])
