"""The lab preamble shows the command lines the runner really runs.

In-process: for cells of each platform, the matrix's real run (run_cell ->
harness.qemu.runner, a real QEMU) and the preamble planned for the same
host (execute.prepare, as ``--dry-run --dry-run-as this-host`` does) give
the same block, and its command line is the runner's argv -- the one QEMU
got (cmdline.txt) -- with the QMP socket, console descriptor and work
directory as placeholders.

Through pytest: a real run of two cells writes ``<platform>.run.txt``, the
dry run planned as this host writes ``<platform>.dry-run.txt``, and the
two files are identical; the default dry run (as a lab host) plans KVM,
the predicted digest and the GHCB model's view of the guest.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from harness.matrix import preamble as P
from harness.matrix.cells import Cell

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env(qemu_binary, qemu_caps):
    from harness.expect.table import load
    from harness.matrix.execute import Env
    from harness.matrix.guests import guest_images
    return Env(qemu=qemu_binary, caps=qemu_caps, table=load(), accel="tcg", guests=guest_images())


def _cell(env, case_id: str, platform: str) -> Cell:
    case = next(c for c in env.table.cases if c.id == case_id)
    return Cell(case, platform, "cfg")


@pytest.mark.qemu
@pytest.mark.parametrize("case_id, platform", [("page-normal", "native"), ("vp-context", "sev-es"),
                                               ("vp-context", "sev-snp")])
def test_preamble_is_what_the_runner_ran(env, case_id, platform, tmp_path):
    from harness.matrix.execute import prepare, run_cell
    cell = _cell(env, case_id, platform)
    real = run_cell(cell, env, tmp_path / "real")
    assert real.argv, real.reason
    planned = prepare(cell, env, tmp_path / "planned")
    assert real.preamble == planned.preamble            # the dry run's block, for this host
    assert (tmp_path / "real" / "preamble.txt").read_text() == real.preamble
    command = next(line for line in real.preamble.splitlines() if line.startswith("command: "))
    argv = shlex.split(command[len("command: "):])
    assert argv == P.normalize(real.argv, tmp_path / "real")
    ran = shlex.split((tmp_path / "real" / "run" / "cmdline.txt").read_text())
    assert argv == P.normalize(ran, tmp_path / "real")
    assert P.QMP_SOCKET in command and P.CONSOLE in command      # placeholders, not this run's


def _pytest(*args, lab_dir: Path):
    env = {**os.environ, "IGVM_HARNESS_LAB_DIR": str(lab_dir),
           "IGVM_HARNESS_MATRIX_DIR": str(lab_dir / "matrix")}
    # serial, and without the plugins these runs do not use (hypothesis alone
    # costs a second of imports)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p",
                           "no:hypothesispytest", "-p", "no:benchmark", "-q", "-n", "0",
                           "suites/matrix", *args], capture_output=True, text=True, cwd=REPO, env=env)


@pytest.mark.qemu
def test_dry_run_diffs_clean_against_a_real_run(tmp_path, qemu_binary):
    select = ["-k", "vp-context/sev-es/cfg or page-normal/sev-es/cfg", "--platform=sev-es",
              "--qemu", qemu_binary]
    real = _pytest(*select, lab_dir=tmp_path)
    assert real.returncode == 0, real.stdout[-2000:] + real.stderr[-2000:]
    dry = _pytest(*select, "--dry-run", "--dry-run-as", "this-host", lab_dir=tmp_path)
    assert dry.returncode == 0, dry.stdout[-2000:] + dry.stderr[-2000:]
    assert "dry run: 2 matrix cells planned, nothing run" in dry.stdout + dry.stderr
    ran = (tmp_path / "sev-es.run.txt").read_text()
    planned = (tmp_path / "sev-es.dry-run.txt").read_text()
    assert ran.count("\n== ") == 2
    assert planned == ran


@pytest.mark.qemu
def test_lab_dry_run_plans_hardware(tmp_path, qemu_binary):
    proc = _pytest("-k", "vp-context/sev-snp/cfg", "--platform=sev-snp", "--dry-run",
                   "--lab-cbitpos", "47", "--qemu", qemu_binary, lab_dir=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = (tmp_path / "sev-snp.dry-run.txt").read_text()
    assert "mode: hardware (accel kvm)" in text and " -accel kvm " in text
    assert "object: sev-snp-guest: id=cgs0 policy=0x30000 cbitpos=47 reduced-phys-bits=1" in text
    assert "launch digest: sha384 " in text and "cpu=qemu64" in text
    # the model runs the guest with the lab's C-bit: the file's page tables carry 47
    assert "guest (GHCB model): PASS guest reported done status=0x2a, QEMU exits 85" in text
    assert "expected: guest boots and reports success" in text
    assert not (tmp_path / "sev-snp.run.txt").exists()
