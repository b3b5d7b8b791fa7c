"""``igvm-harness report compare``: two runs, verdict by verdict.

The unit tests feed it files whose differences are known by construction;
the last test runs a real selection of the conformance suites twice --
serially and with two pytest-xdist workers -- and requires every verdict
(each test's outcome with its skip reason, each matrix cell's status) to
be equal, and no QEMU of either run to be left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.report.compare import compare, compare_files, junit_verdicts, normalised

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
 <testcase classname="suites.a" name="test_pass" time="0.1"/>
 <testcase classname="suites.a" name="test_skip[x]" time="0.1">
  <skipped type="pytest.skip" message="{skip}"/></testcase>
 <testcase classname="suites.a" name="test_xfail" time="0.1">
  <skipped type="pytest.xfail" message="known deviation"/></testcase>
 <testcase classname="suites.a" name="test_fail" time="0.1">{fail}</testcase>
</testsuite></testsuites>
"""


def _junit(tmp_path: Path, name: str, skip="no /dev/sev", fail='<failure message="x"/>') -> Path:
    p = tmp_path / name
    p.write_text(JUNIT.format(skip=skip, fail=fail))
    return p


def _matrix(tmp_path: Path, name: str, cells: dict[str, tuple[str, str]]) -> Path:
    p = tmp_path / name
    p.write_text(json.dumps({"schema": 1, "cells": [
        {"cell_id": cid, "status": st, "mode": mode} for cid, (st, mode) in cells.items()]}))
    return p


def test_equal_runs_compare_equal(tmp_path):
    a = _junit(tmp_path, "a.xml", skip="QEMU at /tmp/pytest-of-root/pytest-3/x lacks y")
    b = _junit(tmp_path, "b.xml", skip="QEMU at /tmp/pytest-of-root/pytest-9/popen-gw1/x lacks y")
    total, diffs = compare_files(a, b)
    assert total == 4 and diffs == []


def test_a_changed_outcome_or_skip_reason_is_a_difference(tmp_path):
    a = _junit(tmp_path, "a.xml")
    b = _junit(tmp_path, "b.xml", skip="no /dev/kvm", fail="")
    _, diffs = compare_files(a, b)
    assert [d.test for d in diffs] == ["suites.a::test_fail", "suites.a::test_skip[x]"]
    assert diffs[0].a == "failed" and diffs[0].b == "passed"
    assert diffs[1].a == "skipped: no /dev/sev" and diffs[1].b == "skipped: no /dev/kvm"


def test_matrix_cells_compare_by_status_and_mode(tmp_path):
    a = _matrix(tmp_path, "a.json", {"c1/native/cfg": ("pass", "native-kvm"),
                                      "c1/sev/cfg": ("boundary", "tcg-fallback")})
    b = _matrix(tmp_path, "b.json", {"c1/native/cfg": ("pass", "native-tcg"),
                                      "c2/sev/cfg": ("boundary", "tcg-fallback")})
    total, diffs = compare_files(a, b)
    assert total == 3
    assert {d.test: (d.a, d.b) for d in diffs} == {
        "c1/native/cfg": ("pass (native-kvm)", "pass (native-tcg)"),
        "c1/sev/cfg": ("boundary (tcg-fallback)", None),
        "c2/sev/cfg": (None, "boundary (tcg-fallback)")}


def test_group_suffix_and_durations_are_not_verdicts():
    assert normalised("t[x]@boot-manager:ovmf-generic") == "t[x]"
    assert normalised("no exit within 3 s; QEMU killed") == normalised("no exit within 20 s; QEMU killed")
    assert compare({"t": "passed"}, {"t": "passed"}) == []


def test_unreadable_or_mixed_input_is_one_error(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<nope")
    with pytest.raises(HarnessError, match="not a readable JUnit"):
        junit_verdicts(bad)
    with pytest.raises(HarnessError, match="not of one kind"):
        compare_files(_junit(tmp_path, "a.xml"), _matrix(tmp_path, "b.json", {}))
    r = subprocess.run([sys.executable, "-m", "harness.cli", "report", "compare", str(bad),
                        str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1


#: A selection of the conformance suites with every kind of verdict: native
#: guests passing under TCG and KVM, matrix cells passing, reaching the
#: hardware boundary and showing known deviations, and the absent-syntax skip.
SELECTION = ["suites/native/test_smoke.py", "suites/matrix", "-k",
             "smoke or memory-map or page-secrets or file-missing or vp-context or sev-guest"]


def _qemus_under(base: Path) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if b"qemu-system" in cmd and str(base).encode() in cmd:
                pids.append(int(entry))
    return pids


@pytest.mark.qemu
def test_serial_and_two_workers_give_the_same_verdicts(tmp_path, qemu_binary):
    root = Path(__file__).resolve().parents[2]
    runs = {}
    for name, workers in (("serial", "0"), ("parallel", "2")):
        out = tmp_path / name
        out.mkdir()
        env = {**os.environ, "IGVM_HARNESS_WORKERS": workers,
               "IGVM_HARNESS_MATRIX_DIR": str(out / "matrix")}
        env.pop("PYTEST_XDIST_WORKER", None)
        r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                            "--qemu", qemu_binary, "--basetemp", str(out / "bt"),
                            f"--junitxml={out / 'junit.xml'}", *SELECTION],
                           cwd=root, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-3000:]
        assert (workers == "2") == ("bringing up nodes" in r.stdout), r.stdout[:2000]
        runs[name] = out
        assert _qemus_under(out) == [], f"QEMU left behind by the {name} run"
    total, diffs = compare_files(runs["serial"] / "junit.xml", runs["parallel"] / "junit.xml")
    assert total > 20 and diffs == [], [d.line() for d in diffs]
    matrix = [next((runs[n] / "matrix").glob("matrix-*.json")) for n in ("serial", "parallel")]
    cells, diffs = compare_files(*matrix)
    assert cells > 10 and diffs == [], [d.line() for d in diffs]
