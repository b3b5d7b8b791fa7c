"""Every command that reads a user-named file, given one it cannot use.

The expectation is the CLI contract (README / harness.errors): one line
``igvm-harness: ...`` on stderr, no traceback, exit status 2 for usage / I/O
problems and 1 for an input file whose content is invalid -- and, for a FIFO,
no hang: ``open()`` of a FIFO blocks until a writer appears (fifo(7)), so a
command that opens it plainly never returns.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.errors import HarnessError
from harness.inputs import read_input, read_text_input

# (argv before the file, argv after it): each reads the file as its input
COMMANDS = {
    "inspect": (["inspect"], []),
    "validate": (["validate"], []),
    "measure": (["measure", "--platform", "sev-snp"], []),
    "certify": (["certify", "--no-boot"], []),
    "report validate": (["report", "validate"], []),
    "report render": (["report", "render"], []),
    "report merge": (["report", "merge"], []),
    "matrix run": (["matrix", "run", "--dry-run"], []),
}


def _cli(tmp_path, argv, timeout=30):
    res = subprocess.run([sys.executable, "-m", "harness.cli", *argv], capture_output=True,
                         text=True, timeout=timeout, cwd=tmp_path, stdin=subprocess.DEVNULL)
    return res.returncode, res.stdout, res.stderr


def _one_line(err: str) -> None:
    assert "Traceback" not in err, err
    assert err.startswith("igvm-harness: ") and err.count("\n") == 1, err


@pytest.mark.parametrize("command", COMMANDS)
def test_fifo_is_refused_without_blocking(tmp_path, command):
    fifo = tmp_path / "input"
    os.mkfifo(fifo)
    before, after = COMMANDS[command]
    rc, out, err = _cli(tmp_path, [*before, str(fifo), *after])
    assert rc == 2, (rc, out, err)
    _one_line(err)
    assert f"{fifo}: not a regular file (a FIFO)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input"]  # nothing written


@pytest.mark.parametrize("command", COMMANDS)
def test_directory_is_one_line(tmp_path, command):
    before, after = COMMANDS[command]
    rc, _, err = _cli(tmp_path, [*before, str(tmp_path), *after])
    assert rc == 2
    _one_line(err)
    assert f"{tmp_path}: is a directory" in err


@pytest.mark.parametrize("command", ["report validate", "report render", "report merge",
                                     "matrix run"])
def test_binary_file_is_invalid_content_not_an_io_error(tmp_path, command):
    """Bytes that are not UTF-8 make an invalid JSON/TOML file: exit 1."""
    blob = tmp_path / "image.igvm"
    blob.write_bytes(b"IGVM\x01\x00\x00\x00\xff\xfe")
    before, after = COMMANDS[command]
    rc, _, err = _cli(tmp_path, [*before, str(blob), *after])
    assert rc == 1
    _one_line(err)
    assert "not UTF-8 text (byte 0xff at offset 8)" in err


def test_character_device_is_refused():
    """/dev/zero would be read (or mapped) forever."""
    with pytest.raises(HarnessError, match=r"/dev/zero: not a regular file \(a character device\)"):
        read_input("/dev/zero")


def test_regular_files_read_whole(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(b"\x00\x01abc")
    assert read_input(f) == b"\x00\x01abc"
    f.write_text("caf\u00e9")
    assert read_text_input(f, "JSON") == "caf\u00e9"
    with pytest.raises(HarnessError, match="no such file") as exc:
        read_input(tmp_path / "absent")
    assert exc.value.exit_code == 2
