"""The pytest plugin seen from outside: skip reasons name what is missing,
and a failing boot attaches its logs to the report."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

INNER = textwrap.dedent("""
    import pytest

    @pytest.mark.qemu
    def test_needs_qemu():
        pass

    @pytest.mark.platforms("sev-snp")
    def test_snp_only():
        pass

    @pytest.mark.requires("sev-snp")
    def test_requires_snp(qemu_caps):
        pass

    def test_boot_fails(boot, guest_images):
        from harness.fixtures.native import reset_vector_image
        out = boot(reset_vector_image(guest_images["reset16"]), accel="tcg")
        assert out.report.status == 99, "deliberate failure"
""")


def _inner(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_inner.py").write_text(INNER)
    return subprocess.run([sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), "--basetemp", str(tmp_path / "bt"),
                           str(tmp_path / "test_inner.py"), *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_a_named_qemu_that_does_not_exist_is_a_usage_error(tmp_path):
    # Skipping everything would let a typo in --qemu pass as a clean CI run.
    res = _inner(tmp_path, "--qemu", str(tmp_path / "no-such-qemu"), "--platform", "native")
    assert res.returncode == 4, res.stdout + res.stderr
    assert "no-such-qemu does not exist" in res.stderr
    assert "Traceback" not in res.stderr


def test_a_named_binary_that_is_not_qemu_is_a_usage_error(tmp_path):
    res = _inner(tmp_path, "--qemu", "/bin/true", "--platform", "native")
    assert res.returncode == 4, res.stdout + res.stderr
    assert "/bin/true" in res.stderr and "Traceback" not in res.stderr


def test_other_platforms_are_deselected_saying_why(tmp_path, qemu_binary):
    """--platform=native: the sev-snp-only test is deselected (pytest's count),
    with one line naming the option, not skipped."""
    res = _inner(tmp_path, "--qemu", qemu_binary, "--platform", "native", "-k", "not boot_fails")
    assert res.returncode == 0, res.stdout[-2000:]
    assert "1 tests of platforms other than native deselected (--platform=native)" in res.stdout
    assert "test_snp_only" not in res.stdout and "not selected" not in res.stdout
    summary = res.stdout.strip().splitlines()[-1]
    assert "2 deselected" in summary and "1 passed" in summary, summary  # -k drops boot_fails


def test_skip_names_missing_igvm_cfg_of_a_stock_qemu(tmp_path, stock_qemu):
    probe = subprocess.run([stock_qemu, "-object", "help"], capture_output=True, text=True)
    assert "igvm-cfg" not in probe.stdout, f"{stock_qemu} is not a stock QEMU: it has igvm-cfg"
    res = _inner(tmp_path, "--qemu", stock_qemu)
    assert "lacks igvm-cfg" in res.stdout


def test_failing_boot_attaches_logs(tmp_path, qemu_binary, guest_images):
    res = _inner(tmp_path, "--qemu", qemu_binary, "-k", "boot_fails")
    assert res.returncode == 1, res.stdout[-2000:]
    out = res.stdout
    assert "igvm-harness QEMU run boot-1" in out
    for part in ("--- cmdline.txt", "igvm-cfg,id=igvm0", "--- console.log", "IGVMT done",
                 "--- qmp.log", "--- stderr.log", "--- outcome.json"):
        assert part in out, part


def test_deselection_is_said_under_xdist_too(tmp_path, qemu_binary):
    """With -n 2 the workers deselect; the controller prints the line once."""
    res = _inner(tmp_path, "--qemu", qemu_binary, "--platform", "native", "-k", "not boot_fails",
                 "-n", "2")
    assert res.returncode == 0, res.stdout[-2000:]
    line = "1 tests of platforms other than native deselected (--platform=native)"
    assert res.stdout.count(line) == 1, res.stdout[-2000:]


def test_timing_says_where_the_time_went(tmp_path, qemu_binary):
    """The timing summary (harness.report.pytest_timing): one line always,
    the per-suite table and the slowest tests with -v; the QEMU run the
    failing test made is counted, also from a pytest-xdist worker."""
    for workers in ("0", "2"):
        res = _inner(tmp_path, "--qemu", qemu_binary, "-k", "boot_fails", "-n", workers)
        assert res.returncode == 1, res.stdout[-2000:]
        line = next(l for l in res.stdout.splitlines() if l.startswith("igvm-harness time:"))
        assert " 1 QEMU runs (start " in line and "slowest: test_inner.py::test_boot_fails" in line
        assert "QEMU CPU" in line and "suite " not in res.stdout        # no table without -v
    res = _inner(tmp_path, "--qemu", qemu_binary, "-k", "boot_fails", "-v")
    rows = res.stdout.splitlines()
    head = next(i for i, l in enumerate(rows) if l.startswith("suite "))
    assert rows[head].split() == ["suite", "tests", "time", "runs", "start", "guest", "QEMU",
                                  "CPU", "shared"]
    assert rows[head + 1].split()[:2] == ["test_inner.py", "1"], rows[head + 1]
    assert any("1 runs (" in l and "test_boot_fails" in l for l in rows[head:])
