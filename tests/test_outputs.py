"""harness.outputs.write_atomic: whole or not at all, nothing left behind,
the old file kept on failure, the permissions open() would give (or the
caller's), and the writers that moved onto it keep their semantics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.outputs import write_atomic


@pytest.fixture
def umask_027():
    """A umask other than the usual 022, so the permission checks can fail."""
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


def _mode(p: Path) -> int:
    return p.stat().st_mode & 0o777


def test_writes_bytes_and_text_with_open_permissions(tmp_path, umask_027):
    write_atomic(tmp_path / "b", b"\x00\xff")
    write_atomic(tmp_path / "t", "été ✓\n")
    assert (tmp_path / "b").read_bytes() == b"\x00\xff"
    assert (tmp_path / "t").read_bytes() == "été ✓\n".encode("utf-8")
    # what open(..., "w") creates: 0666 less the umask (not mkstemp's 0600)
    with open(tmp_path / "ref", "w"):
        pass
    assert _mode(tmp_path / "b") == _mode(tmp_path / "ref") == 0o666 & ~umask_027
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "ref", "t"]


def test_explicit_mode_ignores_the_umask(tmp_path, umask_027):
    write_atomic(tmp_path / "x", b"#!/bin/sh\n", mode=0o755)
    assert _mode(tmp_path / "x") == 0o755


def test_replaces_an_existing_file_whole(tmp_path):
    (tmp_path / "f").write_bytes(b"old")
    write_atomic(tmp_path / "f", b"new", prefix=".f.")
    assert (tmp_path / "f").read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


#: A real failed write: the file-size limit (RLIMIT_FSIZE, setrlimit(2)) makes
#: write(2) fail with EFBIG once the temporary reaches it (SIGXFSZ ignored).
_FSIZE_CHILD = r"""
import resource, signal, sys
from harness.outputs import write_atomic
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
try:
    write_atomic(sys.argv[1], b"n" * (1 << 20), prefix=".f.")
except OSError as exc:
    print(exc.errno)
"""


def test_a_failing_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    import errno

    target = tmp_path / "f"
    target.write_bytes(b"old")
    out = subprocess.run([sys.executable, "-c", _FSIZE_CHILD, str(target)], capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == str(errno.EFBIG), out.stderr
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_an_interrupted_rename_leaves_no_temporary(tmp_path, monkeypatch, exc):
    # Ctrl-C (or an OS error) after the data went out, before the rename
    import harness.outputs as outputs

    (tmp_path / "f").write_bytes(b"old")

    def fail(src, dst):
        raise exc
    monkeypatch.setattr(outputs.os, "replace", fail)
    with pytest.raises(type(exc)):
        write_atomic(tmp_path / "f", b"new")
    assert (tmp_path / "f").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_a_directory_in_the_way_is_an_error_and_leaves_nothing(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        write_atomic(tmp_path / "d", b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


# ---------------------------------------------- the writers moved onto it
def test_qemu_current_entry_is_whole_json(tmp_path):
    from harness.qemu import build

    entry = tmp_path / "qemu" / "builds" / "e"
    (tmp_path / "qemu").mkdir()
    build.set_current(tmp_path, entry)
    data = json.loads((tmp_path / "qemu" / "current.json").read_text())
    assert data == {"entry": str(entry), "binary": str(entry / "bin" / build.BINARY)}
    assert [p.name for p in (tmp_path / "qemu").iterdir()] == ["current.json"]


def test_stable_library_copy_keeps_the_source_mode(tmp_path, umask_027):
    from harness.qemu import build

    prefix, stable = tmp_path / "prefix", tmp_path / "stable"
    (prefix / "lib").mkdir(parents=True)
    (prefix / "lib" / "libigvm.so").write_bytes(b"\x7fELF")
    (prefix / "lib" / "libigvm.so").chmod(0o755)
    (prefix / "lib" / "igvm.pc").write_text(f"prefix={prefix}\n")
    (prefix / "lib" / "igvm.pc").chmod(0o604)
    build.sync_libigvm(prefix, stable)
    assert _mode(stable / "lib" / "libigvm.so") == 0o755
    assert _mode(stable / "lib" / "igvm.pc") == 0o604   # the source's bits, not the umask's
    assert (stable / "lib" / "igvm.pc").read_text() == f"prefix={stable}\n"
    assert sorted(p.name for p in (stable / "lib").iterdir()) == ["igvm.pc", "libigvm.so"]


def test_asset_manifest_leaves_no_temporary(tmp_path):
    from harness.assets import store

    store.save({"x": {"version": "1"}}, tmp_path)
    assert json.loads((tmp_path / store.MANIFEST).read_text())["assets"] == {"x": {"version": "1"}}
    assert [p.name for p in tmp_path.iterdir()] == [store.MANIFEST]


def test_write_all_is_all_or_nothing(tmp_path):
    from harness.errors import HarnessError
    from harness.outputs import write_all
    first, second = tmp_path / "a.igvm", tmp_path / "no-such-dir" / "b.igvm"
    with pytest.raises(HarnessError, match="b.igvm: cannot write"):
        write_all([(first, b"one"), (second, b"two")])
    assert list(tmp_path.iterdir()) == []          # the first one removed again
    write_all([(first, b"one"), (tmp_path / "c", "two")])
    assert first.read_bytes() == b"one" and (tmp_path / "c").read_text() == "two"
