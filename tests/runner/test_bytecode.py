"""harness/bytecode.py: set-up leaves pytest's rewritten modules cached, so
that with PYTHONDONTWRITEBYTECODE set a pytest process does not parse them
again -- and a changed source is still what runs."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from harness.bytecode import collect_with_bytecode, rewritten

REPO = Path(__file__).resolve().parents[2]


def _project(root: Path) -> None:
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (root / "conftest.py").write_text("def helper(x):\n    assert x > 0\n    return x\n")
    (root / "test_a.py").write_text("def test_a():\n    assert 1 + 1 == 2\n")


def _pytest_no_bytecode(root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", IGVM_HARNESS_WORKERS="0")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=root, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=120, check=False)


def test_collect_with_bytecode_caches_what_a_no_bytecode_run_rewrites(tmp_path):
    _project(tmp_path)
    first = _pytest_no_bytecode(tmp_path)
    assert first.returncode == 0, first.stdout
    assert rewritten(tmp_path) == [], "PYTHONDONTWRITEBYTECODE: pytest caches nothing itself"

    proc = collect_with_bytecode(tmp_path)
    assert proc.returncode == 0, proc.stdout
    cached = rewritten(tmp_path)
    assert {p.name.split(".")[0] for p in cached} == {"conftest", "test_a"}, cached
    stamps = {p: p.stat().st_mtime_ns for p in cached}

    again = _pytest_no_bytecode(tmp_path)
    assert again.returncode == 0, again.stdout
    assert {p: p.stat().st_mtime_ns for p in rewritten(tmp_path)} == stamps, \
        "the cached modules were read, not written again"


def test_a_changed_source_runs_not_its_cached_bytecode(tmp_path):
    _project(tmp_path)
    assert collect_with_bytecode(tmp_path).returncode == 0
    # another size: the cache is checked by source size and whole-second
    # mtime (importlib's pyc header; pytest's _read_pyc), so an edit of the
    # same size within the same second is the one change it cannot see
    (tmp_path / "test_a.py").write_text("def test_a():\n    assert 1 + 1 == 30\n")
    proc = _pytest_no_bytecode(tmp_path)
    assert proc.returncode == 1, proc.stdout          # the new source's verdict
    assert "assert (1 + 1) == 30" in proc.stdout, proc.stdout  # rewritten: pytest's explanation


def test_setup_left_the_harness_plugins_rewritten():
    """Set-up ran harness/bytecode.py: each pytest plugin module this
    distribution declares has pytest's rewritten bytecode beside it (a
    development checkout without PYTHONDONTWRITEBYTECODE writes them itself)."""
    plugins = [ep.value for ep in importlib.metadata.distribution("igvm-harness").entry_points
               if ep.group == "pytest11"]
    assert plugins
    missing = []
    for name in plugins:
        origin = Path(importlib.util.find_spec(name).origin)
        cache = origin.parent / "__pycache__"
        if not list(cache.glob(f"{origin.stem}.*-pytest-*.pyc")):
            missing.append(name)
    assert not missing, f"no rewritten bytecode for {missing}: run ./setup.sh"
