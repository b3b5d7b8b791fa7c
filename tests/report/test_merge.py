"""Merging many hosts' results into one dashboard with per-cell history."""

from __future__ import annotations

import json

import pytest

from harness.errors import HarnessError
from harness.report import merge, schema, writers

from .conftest import make_report


def _write(report, directory, stem):
    return writers.write_all(report, directory, stem)["json"]


@pytest.fixture
def two_hosts(tmp_path):
    """Host A ran twice (a check regressed in between), host B once."""
    a1 = _write(make_report({"spec.validate": "pass", "sev-es.boot": "pass"},
                            hostname="lab-a", started="2026-11-20T02:00:00+00:00"), tmp_path, "a1")
    a2 = _write(make_report({"spec.validate": "pass", "sev-es.boot": "fail"},
                            hostname="lab-a", started="2026-11-21T02:00:00+00:00"), tmp_path, "a2")
    b1 = _write(make_report({"spec.validate": "pass", "sev-es.boot": "boundary"},
                            hostname="lab-b", started="2026-11-21T03:00:00+00:00"), tmp_path, "b1")
    return a1, a2, b1


def _cell(dash, check, host):
    [cell] = [c for c in dash["cells"] if c["row"] == f"vendor.igvm::{check}"
              and c["column"].startswith(host + " ")]
    return cell


def test_two_hosts_merge_into_one_dashboard(two_hosts):
    dash = merge.merge_files(list(two_hosts))
    assert [c["hostname"] for c in dash["columns"]] == ["lab-a", "lab-b"]
    assert {r["check"] for r in dash["rows"]} == {"spec.validate", "sev-es.boot"}
    assert len(dash["cells"]) == 4 and len(dash["runs"]) == 3
    boot_a = _cell(dash, "sev-es.boot", "lab-a")
    assert [h["verdict"] for h in boot_a["history"]] == ["pass", "fail"]
    assert boot_a["latest"] == "fail" and boot_a["changed"] is True
    boot_b = _cell(dash, "sev-es.boot", "lab-b")
    assert boot_b["latest"] == "boundary" and boot_b["changed"] is False
    assert dash["summary"]["verdict"] == "fail" and dash["summary"]["fail"] == 1


def test_previous_dashboard_carries_history_and_inputs_deduplicate(two_hosts, tmp_path):
    a1, a2, b1 = two_hosts
    first = merge.merge_files([a1, b1])
    merge.write_dashboard(first, tmp_path / "dash1")
    # Next night: last dashboard + the new result + (by mistake) an old one again.
    second = merge.merge_files([tmp_path / "dash1" / "dashboard.json", a2, a1])
    boot_a = _cell(second, "sev-es.boot", "lab-a")
    assert [h["started"][:10] for h in boot_a["history"]] == ["2026-11-20", "2026-11-21"]
    assert len(second["runs"]) == 3


def test_history_limit_keeps_the_newest(tmp_path):
    paths = [_write(make_report({"x": v}, started=f"2026-11-{10 + i:02d}T02:00:00+00:00"),
                    tmp_path, f"r{i}")
             for i, v in enumerate(["pass", "fail", "pass", "skip"])]
    dash = merge.merge_files(paths, history_limit=2)
    [cell] = dash["cells"]
    assert [h["verdict"] for h in cell["history"]] == ["pass", "skip"]


def test_dashboard_files_validate_and_render(two_hosts, tmp_path):
    paths = merge.write_dashboard(merge.merge_files(list(two_hosts)), tmp_path / "d")
    doc = schema.load(paths["json"])
    assert doc["schema"] == "igvm-harness/dashboard"
    page = paths["html"].read_text()
    assert page.count('class="hist"') == 4
    assert "lab-a" in page and "lab-b" in page


def test_merge_refuses_bad_inputs(tmp_path, two_hosts):
    with pytest.raises(HarnessError, match="at least one"):
        merge.merge_files([])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "igvm-harness/results", "schema_version": 1}))
    with pytest.raises(HarnessError, match="bad.json: does not match"):
        merge.merge_files([two_hosts[0], bad])
    with pytest.raises(HarnessError, match="--history"):
        merge.merge_files(list(two_hosts), history_limit=0)


def test_cli_merge_validate_render(two_hosts, tmp_path, capsys):
    from harness.cli import main

    a1, a2, b1 = two_hosts
    assert main(["report", "merge", str(a1), str(a2), str(b1),
                 "--output", str(tmp_path / "dash")]) == 0
    out = capsys.readouterr().out
    assert "dashboard: 2 configurations x 2 checks from 3 runs: FAIL" in out
    assert "changed: vendor.igvm::sev-es.boot on lab-a" in out and "pass -> fail" in out
    assert main(["report", "validate", str(tmp_path / "dash" / "dashboard.json"),
                 str(a1)]) == 0
    assert main(["report", "render", str(a1), "--output", str(tmp_path / "re")]) == 0
    assert (tmp_path / "re" / "a1.html").is_file()
    capsys.readouterr()
    assert main(["report", "merge", str(tmp_path / "nope.json")]) == 2
    assert capsys.readouterr().err == f"igvm-harness: {tmp_path / 'nope.json'}: no such file\n"


def test_two_qemu_builds_of_one_version_are_two_columns(tmp_path):
    a = make_report({"x": "pass"})
    b = make_report({"x": "fail"})
    b.environment["qemu"]["path"] = "/opt/other-build/bin/qemu-system-x86_64"
    dash = merge.merge_files([_write(a, tmp_path, "a"), _write(b, tmp_path, "b")])
    assert len(dash["columns"]) == 2
    assert {c["qemu_version"] for c in dash["columns"]} == {"10.2.2"}
    assert sorted(c["latest"] for c in dash["cells"]) == ["fail", "pass"]
