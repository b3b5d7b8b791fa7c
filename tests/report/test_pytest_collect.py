"""The pytest collector: a real pytest session's outcomes become the results model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from harness.igvm.defs import PlatformType
from harness.report.matrix_run import collector_args

from . import images

REPO = Path(__file__).resolve().parents[2]

SAMPLE = textwrap.dedent('''
    import pytest

    def test_passes():
        assert True

    def test_fails():
        assert 1 == 2, "one is not two"

    def test_skips():
        pytest.skip("no /dev/sev")

    @pytest.mark.xfail(reason="known deviation")
    def test_xfails():
        assert False

    @pytest.fixture
    def broken():
        raise RuntimeError("fixture exploded")

    def test_errors(broken):
        pass

    def test_boundary(record_property):
        record_property("igvm_check", {"verdict": "boundary", "platform": "sev-es",
                                       "message": "accelerator does not support confidential guest",
                                       "evidence": {"console": "tail"}})
        record_property("igvm_cells", [{"directive": "PAGE_DATA", "platform": "sev-es",
                                        "verdict": "boundary"}])
        pytest.skip("reached hardware boundary")
''')


def _pytest(tmp_path, *args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pytest", *collector_args(),
                           "-p", "no:cacheprovider", *args], cwd=cwd or tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_session_outcomes_map_to_verdicts(tmp_path):
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    proc = _pytest(tmp_path, "test_sample.py", "--igvm-report-dir", "out", "-q")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "igvm-harness report" in proc.stdout
    [path] = (tmp_path / "out").glob("*.json")
    doc = json.loads(path.read_text())
    verdicts = {c["id"].split("::")[1]: c for c in doc["checks"]}
    assert {k: v["verdict"] for k, v in verdicts.items()} == {
        "test_passes": "pass", "test_fails": "fail", "test_skips": "skip",
        "test_xfails": "xfail", "test_errors": "error", "test_boundary": "boundary"}
    assert verdicts["test_skips"]["message"] == "no /dev/sev"
    assert "one is not two" in verdicts["test_fails"]["message"]
    assert any("fixture exploded" in log["text"]
               for log in verdicts["test_errors"]["evidence"]["logs"])
    assert verdicts["test_boundary"]["evidence"]["console"] == "tail"
    assert doc["matrix"] == [{"directive": "PAGE_DATA", "platform": "sev-es",
                              "verdict": "boundary", "expected": "", "observed": "",
                              "form": "", "check": None}]
    assert doc["kind"] == "suite" and doc["summary"]["verdict"] == "fail"


def test_nothing_written_without_a_report_dir(tmp_path):
    (tmp_path / "test_one.py").write_text("def test_one():\n    pass\n")
    proc = _pytest(tmp_path, "test_one.py", "-q")
    assert proc.returncode == 0
    # (pytest-benchmark may leave its hidden .benchmarks directory)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "test_one.py"]


def test_certify_suite_without_igvm_skips_with_reason():
    proc = subprocess.run([sys.executable, "-m", "pytest", "suites/certify", "-q", "-rs",
                           "-p", "no:cacheprovider"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout
    assert "no --igvm vendor image given" in proc.stdout


def test_certify_suite_on_a_vendor_image_writes_the_report(tmp_path):
    image = images.with_secrets_page(tmp_path / "vendor.igvm", PlatformType.SEV_ES)
    proc = subprocess.run([sys.executable, "-m", "pytest", str(REPO / "suites" / "certify"),
                           "-q", "-p", "no:cacheprovider", "--rootdir", str(REPO),
                           "--platform=sev-es", "--igvm", str(image)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # SECRETS page is refused
    assert "sev-es.directives" in proc.stdout
    [path] = (tmp_path / "reports").glob("certify-vendor.igvm-*.json")
    doc = json.loads(path.read_text())
    checks = {c["id"]: c for c in doc["checks"]}
    assert checks["sev-es.directives"]["verdict"] == "fail"
    assert checks["spec.validate"]["verdict"] == "pass"
    assert doc["subject"]["platform"] == "sev-es"
    assert ("PAGE_DATA(SECRETS)", "sev-es", "fail") in {
        (c["directive"], c["platform"], c["verdict"]) for c in doc["matrix"]}
    assert (tmp_path / "reports" / path.with_suffix(".html").name).is_file()


def test_runner_log_directories_become_evidence(tmp_path):
    run = tmp_path / "run1"
    run.mkdir()
    (run / "console.log").write_text("IGVMT status=ok\n")
    (run / "stderr.log").write_text("qemu-system-x86_64: warning: something\n")
    (tmp_path / "test_run.py").write_text(textwrap.dedent(f'''
        def test_booted(request):
            request.node.user_properties.append(("qemu_run", {str(run)!r}))
    '''))
    proc = _pytest(tmp_path, "test_run.py", "--igvm-report-dir", "out", "-q")
    assert proc.returncode == 0, proc.stdout
    [check] = json.loads(next((tmp_path / "out").glob("*.json")).read_text())["checks"]
    assert check["verdict"] == "pass"
    assert check["evidence"]["console"] == "IGVMT status=ok\n"
    assert [log["name"] for log in check["evidence"]["logs"]] == ["QEMU stderr (run1)"]


def test_run_directories_recorded_while_the_call_is_reported(tmp_path):
    # harness.plugin appends ("qemu_run", dir) in a makereport hookwrapper,
    # after the call report was built: the teardown report carries it.
    run = tmp_path / "run2"
    run.mkdir()
    (run / "console.log").write_text("IGVMT late=1\n")
    (tmp_path / "conftest.py").write_text(textwrap.dedent(f'''
        import pytest

        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_makereport(item, call):
            yield
            if call.when == "call":
                item.user_properties.append(("qemu_run", {str(run)!r}))
    '''))
    (tmp_path / "test_late.py").write_text("def test_late():\n    pass\n")
    proc = _pytest(tmp_path, "test_late.py", "--igvm-report-dir", "out", "-q")
    assert proc.returncode == 0, proc.stdout
    [check] = json.loads(next((tmp_path / "out").glob("*.json")).read_text())["checks"]
    assert check["evidence"]["console"] == "IGVMT late=1\n"
