"""The harness's pytest options given bad values: a pytest usage error
(exit status 4, ExitCode.USAGE_ERROR) naming the option, never a run in
which every boot times out."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

INNER = textwrap.dedent("""
    def test_seen(pytestconfig):
        assert pytestconfig.getoption("--boot-timeout") > 0
""")


def _inner(tmp_path, *args):
    (tmp_path / "test_inner.py").write_text(INNER)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path / "test_inner.py"), *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("value, why", [
    ("-1", "must be a positive number of seconds"),
    ("0", "must be a positive number of seconds"),
    ("nan", "must be a positive number of seconds"),
    ("soon", "not a number of seconds"),
])
def test_bad_boot_timeout_is_a_usage_error(tmp_path, value, why):
    res = _inner(tmp_path, f"--boot-timeout={value}")
    assert res.returncode == 4, res.stdout + res.stderr
    assert f"argument --boot-timeout: {why}" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout


def test_good_boot_timeout_runs(tmp_path):
    res = _inner(tmp_path, "--boot-timeout=2.5")
    assert res.returncode == 0 and "1 passed" in res.stdout
