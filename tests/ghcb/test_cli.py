"""``igvm-harness guest check``: the matrix's SEV-SNP VP-context file
passes, its negative twin fails naming the exit code, bad input is one line."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.ghcb.conftest import patch_config


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "harness.cli", "guest", "check", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


def test_check_passes_a_booting_cell(cell_file, tmp_path):
    path = tmp_path / "cell.igvm"
    path.write_bytes(cell_file("vp-context", "sev-snp"))
    proc = _cli(path, "--platform", "sev-snp")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "IGVMT done status=0x2a" in proc.stdout
    assert "PASS: guest reported done status=0x2a, QEMU exits 85" in proc.stdout
    assert "vmgexit:ghcb 0x7b (IOIO)" in proc.stdout


def test_check_fails_a_termination_naming_it(cell_file, tmp_path):
    path = tmp_path / "twin.igvm"
    path.write_bytes(patch_config(cell_file("vp-context", "sev-es"), exit_port=0x600))
    proc = _cli(path, "--platform", "sev-es", "--json")
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "terminated" and not out["passed"]
    assert "Termination Request" in out["message"] and "reason code 0x2a" in out["message"]


def test_check_bad_input_is_one_line(tmp_path):
    proc = _cli(tmp_path / "none.igvm", "--platform", "sev-es")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    bad = tmp_path / "bad.igvm"
    bad.write_bytes(b"IGVM" + bytes(60))
    proc = _cli(bad, "--platform", "sev-es")
    assert proc.returncode in (1, 2) and proc.stderr.startswith("igvm-harness: ")
    assert "Traceback" not in proc.stderr


def test_check_wrong_platform_is_qemus_reason(cell_file, tmp_path):
    path = tmp_path / "snp-only.igvm"
    path.write_bytes(cell_file("vp-context", "sev-snp"))
    proc = _cli(path, "--platform", "sev-es")
    assert proc.returncode == 1
    assert "no SEV_ES platform header" in proc.stderr
