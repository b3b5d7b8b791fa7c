"""``certify --disk``: bad disks and missing options are one line, before any boot.

The CLI contract (tests/cli/test_bad_inputs.py): one ``igvm-harness: ...``
line on stderr, no traceback, exit 2 for usage / I/O problems, no hang on a
FIFO.  The boot with a real disk is suites/firmware/test_disk_boot.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import PlatformType


@pytest.fixture
def image(tmp_path):
    b = IgvmBuilder()
    b.platform(PlatformType.NATIVE)
    b.pages(0xFFFFF000, bytes(4096))
    path = tmp_path / "fw.igvm"
    b.write(path)
    return path


def _certify(tmp_path, *argv):
    return subprocess.run([sys.executable, "-m", "harness.cli", "certify", *map(str, argv),
                           "--output", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)


def _one_line(r, code, *words):
    assert r.returncode == code and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("igvm-harness: ") and r.stderr.count("\n") == 1, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def test_disk_needs_expect_console(tmp_path, image):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(4096))
    _one_line(_certify(tmp_path, image, "--disk", disk), 2, "--expect-console")


@pytest.mark.parametrize("kind", ["missing", "directory", "fifo"])
def test_unusable_disk_is_one_line(tmp_path, image, kind):
    disk = tmp_path / "disk"
    if kind == "directory":
        disk.mkdir()
    elif kind == "fifo":
        os.mkfifo(disk)
    words = {"missing": "no such file", "directory": "is a directory", "fifo": "a FIFO"}[kind]
    _one_line(_certify(tmp_path, image, "--disk", disk, "--expect-console", "x"), 2, words)
    assert not (tmp_path / "out").exists()
