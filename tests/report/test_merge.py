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


def _cell(dash, case, host):
    [cell] = [c for c in dash["cells"] if c["row"] == f"vendor.igvm::{case}"
              and c["column"].startswith(host + " ")]
    return cell


def test_two_hosts_merge_into_one_dashboard(two_hosts):
    dash = merge.merge_files(list(two_hosts))
    assert [c["hostname"] for c in dash["columns"]] == ["lab-a", "lab-b"]
    assert {c["platform"] for c in dash["columns"]} == {"sev-es"}
    # the platform is the column: "sev-es.boot" is case "boot" in the sev-es column
    assert {r["check"] for r in dash["rows"]} == {"spec.validate", "boot"}
    assert len(dash["cells"]) == 4 and len(dash["runs"]) == 3
    boot_a = _cell(dash, "boot", "lab-a")
    assert [h["verdict"] for h in boot_a["history"]] == ["pass", "fail"]
    assert boot_a["latest"] == "fail" and boot_a["changed"] is True
    boot_b = _cell(dash, "boot", "lab-b")
    assert boot_b["latest"] == "boundary" and boot_b["changed"] is False
    assert dash["summary"]["verdict"] == "fail" and dash["summary"]["fail"] == 1


def test_previous_dashboard_carries_history_and_inputs_deduplicate(two_hosts, tmp_path):
    a1, a2, b1 = two_hosts
    first = merge.merge_files([a1, b1])
    merge.write_dashboard(first, tmp_path / "dash1")
    # Next night: last dashboard + the new result + (by mistake) an old one again.
    second = merge.merge_files([tmp_path / "dash1" / "dashboard.json", a2, a1])
    boot_a = _cell(second, "boot", "lab-a")
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
    assert "dashboard: 2 configurations (2 platform columns) x 2 cases from 3 runs: FAIL" in out
    assert "changed: vendor.igvm::boot on lab-a" in out and "pass -> fail" in out
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


def _suite_report(cells: dict[str, str], *, accel: str = "tcg", platform: str = "auto",
                  hostname: str = "lab-a", started: str = "2026-11-20T02:00:00+00:00"):
    """A suite run: matrix cells ``case/platform/syntax`` and plain pytest ids."""
    from harness.report.model import Check

    report = make_report({}, hostname=hostname, started=started)
    report.kind, report.title = "suite", "igvm-harness suite"
    report.subject = {"name": "suite", "platform": platform}
    report.environment["accel"] = accel
    for cid, verdict in cells.items():
        plat = cid.split("/")[1] if cid.count("/") == 2 else None
        report.checks.append(Check(cid, cid.split("/")[0], verdict, platform=plat))
    return report


def test_rows_are_cases_and_columns_platforms_within_configurations(tmp_path):
    """Four configurations' worth of runs (2 accelerators x 2 platform choices)
    give one row per case, and a column per platform each configuration ran."""
    runs = []
    for accel in ("tcg", "kvm"):
        runs.append(_suite_report({"page-normal/native/cfg": "pass", "vp-context/native/cfg": "xfail",
                                   f"suites/native/test_boot.py::test_vp[q35-{accel}]": "pass"},
                                  accel=accel, platform="native"))
        runs.append(_suite_report({"page-normal/sev/cfg": "boundary",
                                   "vp-context/sev/cfg": "boundary"}, accel=accel, platform="sev"))
    paths = [_write(r, tmp_path, f"r{i}") for i, r in enumerate(runs)]
    dash = merge.merge_files(paths)
    assert sorted(r["check"] for r in dash["rows"]) == [
        "page-normal/cfg", "suites/native/test_boot.py::test_vp[q35]", "vp-context/cfg"]
    configs = [c["configuration"] for c in dash["columns"]]
    assert len(set(configs)) == 2 and all(c.endswith((" | tcg", " | kvm")) for c in configs)
    assert [c["platform"] for c in dash["columns"]] == ["native", "sev", "native", "sev"]
    # 2 matrix cases x 2 platforms + the native test (native only) per configuration
    assert len(dash["cells"]) == 2 * (2 * 2 + 1)
    latest = {(c["row"].split("::", 1)[1], *c["column"].rsplit(" | ", 2)[1:]): c["latest"]
              for c in dash["cells"]}
    assert latest[("page-normal/cfg", "kvm", "sev")] == "boundary"
    assert latest[("suites/native/test_boot.py::test_vp[q35]", "tcg", "native")] == "pass"
    # the native test never ran on sev: no cell at all, not a skip
    assert ("suites/native/test_boot.py::test_vp[q35]", "tcg", "sev") not in latest


def test_case_of_drops_platform_and_accel_only_as_whole_tokens():
    assert merge.case_of("page-normal/sev/cfg", "sev", "tcg") == "page-normal/cfg"
    assert merge.case_of("sev-es.boot", "sev-es", None) == "boot"
    assert merge.case_of("sev-es.boot", "sev", None) == "sev-es.boot"   # not a token
    assert merge.case_of("malformed[sev-x]/sev/cfg", "sev", None) == "malformed[sev-x]/cfg"
    assert merge.case_of("t.py::test_x[q35-kvm]", "-", "kvm") == "t.py::test_x[q35]"
    assert merge.case_of("t.py::test_x[kvm]", None, "kvm") == "t.py::test_x"
    assert merge.case_of("t.py::test_kvm[q35]", None, "kvm") == "t.py::test_kvm[q35]"
    assert merge.case_of("t.py::test_x[q35-kvm]", None, "auto") == "t.py::test_x[q35-kvm]"
    assert merge.case_of("suites/native/t.py::test_x", "native", None) == "suites/native/t.py::test_x"


def test_ci_cells_of_one_configuration_started_in_one_second_are_separate_runs(tmp_path):
    """A CI pipeline starts the platform cells of one host and accelerator
    together: same configuration, same started second, files of the same
    name in each cell's directory.  Each results document is one run, named
    with its cell's directory (two runs were counted as one)."""
    paths = []
    for platform in ("sev", "sev-es"):
        report = make_report({f"{platform}.boot": "boundary"}, started="2026-11-21T02:00:00+00:00")
        report.subject["platform"] = report.title = platform
        report.checks[0].platform = platform
        paths.append(writers.write_all(report, tmp_path / f"native-{platform}-tcg", "suite")["json"])
    dash = merge.merge_files(paths)
    assert len(dash["columns"]) == 2
    assert sorted((r["platform"], r["source"]) for r in dash["runs"]) == [
        ("sev", "native-sev-tcg/suite.json"), ("sev-es", "native-sev-es-tcg/suite.json")]
