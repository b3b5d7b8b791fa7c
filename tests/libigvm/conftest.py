"""Fixtures for the libigvm tests: one out-of-tree build per session.

The library lives in libigvm/ at the top of the checkout; it is built with its own Makefile
into a temporary BUILDDIR so that nothing is written into the repository.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

LIBIGVM_DIR = Path(__file__).resolve().parents[2] / "libigvm"


def _require_toolchain() -> None:
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no C compiler (gcc)")
    if shutil.which("make") is None:
        pytest.skip("no make")


@pytest.fixture(scope="session")
def libigvm_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build libigvm.a and igvm-check out of tree; return the build directory."""
    _require_toolchain()
    builddir = tmp_path_factory.mktemp("libigvm-build")
    proc = subprocess.run(
        ["make", "-s", "-C", str(LIBIGVM_DIR), f"BUILDDIR={builddir}", "all"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"libigvm build failed:\n{proc.stdout}\n{proc.stderr}"
    return builddir


@pytest.fixture(scope="session")
def igvm_check(libigvm_build: Path) -> Path:
    """Path of the igvm-check CLI built from this tree."""
    tool = libigvm_build / "igvm-check"
    assert tool.is_file()
    return tool
