"""The Avocado wrapper runs the certification profile as an Avocado job."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.igvm.defs import PlatformType

from . import images

pytest.importorskip("avocado", reason="avocado-framework not installed (the [avocado] extra)")

WRAPPER = Path(__file__).resolve().parents[2] / "harness" / "avocado" / "igvm_tests.py"


def _avocado(tmp_path, *params):
    exe = Path(sys.executable).with_name("avocado")
    if not exe.exists():
        exe = shutil.which("avocado")
    if not exe:
        pytest.skip("no avocado command next to this Python")
    jobs = tmp_path / "jobs"
    proc = subprocess.run([str(exe), "run", f"{WRAPPER}:IgvmCertify.test",
                           "--job-results-dir", str(jobs), *params],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    [results] = jobs.glob("job-*/results.json")
    return proc, json.loads(results.read_text()), results.parent


def test_refused_image_fails_the_avocado_test(tmp_path):
    image = images.with_secrets_page(tmp_path / "vendor.igvm", PlatformType.SEV_ES)
    proc, results, job = _avocado(tmp_path, "-p", f"igvm={image}", "-p", "platform=sev-es",
                                  "-p", "boot=no")
    assert proc.returncode != 0
    [test] = results["tests"]
    assert test["status"] == "FAIL"
    assert "sev-es.directives" in test["fail_reason"]
    # The harness's reports are kept with the job, in the test's output directory.
    assert list(job.glob("test-results/*/data/certify-vendor.igvm-*.html"))


def test_without_an_image_the_test_is_cancelled(tmp_path):
    proc, results, _ = _avocado(tmp_path)
    [test] = results["tests"]
    assert test["status"] == "CANCEL"
    assert "igvm=FILE" in test["fail_reason"]
