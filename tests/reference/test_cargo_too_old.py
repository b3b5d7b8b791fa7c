"""A cargo older than the committed locks' format is named as such, not as an
unreachable crates.io.

Found in a fresh Debian 12 root: with Debian's cargo 1.65 on PATH, ``igvm-harness
oracle build`` said "crates.io unreachable" and the QEMU build's fallback
reason said the same, while cargo had said it cannot read a version 4 lock.
The cargo here is a stand-in (a shell script, named as such): a real old cargo
is no part of this machine kind, and was checked once in that root.  It
prints what Debian 12's cargo 1.65.0 printed there, word for word.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from harness import cargo

ROOT = Path(__file__).resolve().parents[2]
#: Debian 12's cargo 1.65.0 on tools/igvm-oracle/Cargo.lock (seen in the fresh root).
OLD_CARGO_SAYS = """\
error: failed to parse lock file at: {lock}

Caused by:
  lock file version `4` was found, but this version of Cargo does not understand this lock file, perhaps Cargo needs to be updated?
"""


@pytest.fixture
def old_cargo(tmp_path, monkeypatch):
    """A stand-in cargo that answers like Debian 12's cargo 1.65 (exit 101)."""
    script = tmp_path / "bin" / "cargo"
    script.parent.mkdir()
    lock = ROOT / "tools" / "igvm-oracle" / "Cargo.lock"
    script.write_text("#!/bin/sh\n"
                      'if [ "$1" = --version ]; then echo "cargo 1.65.0"; exit 0; fi\n'
                      f"cat >&2 <<'END'\n{OLD_CARGO_SAYS.format(lock=lock)}END\n"
                      "exit 101\n")
    script.chmod(0o755)
    monkeypatch.setattr(cargo, "cargo_binary", lambda: str(script))
    monkeypatch.setenv("IGVM_HARNESS_CACHE", str(tmp_path / "cache"))
    return script


def test_a_cargo_older_than_the_lock_is_named(old_cargo):
    with pytest.raises(cargo.Unavailable) as exc:
        cargo.fetch(ROOT / "tools" / "igvm-oracle", io.StringIO(), lambda line: None)
    msg = str(exc.value)
    assert msg.startswith("cargo 1.65.0 is too old for igvm-oracle/Cargo.lock (lock file version 4")
    assert "unreachable" not in msg
    assert exc.value.exit_code == 3      # set-up warns and goes on, as without cargo


def test_the_lock_the_stand_in_refuses_is_version_4():
    """The stand-in's premise: the committed locks are in the format cargo 1.65 cannot read."""
    for crate in ("igvm-oracle", "igvm-c"):
        head = (ROOT / "tools" / crate / "Cargo.lock").read_text().splitlines()[:5]
        assert "version = 4" in head, (crate, head)
