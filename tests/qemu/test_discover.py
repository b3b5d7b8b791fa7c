"""Discovery order: --qemu, $QEMU, the cached build, PATH only with IGVM."""

from __future__ import annotations

import json
import os

import pytest

from harness.errors import HarnessError
from harness.qemu import build, discover


def _exe(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\necho 'QEMU emulator version 10.2.2'\n")
    path.chmod(0o755)
    return path


def _cached_entry(cache):
    entry = build.builds_dir(cache) / "qemu-10.2.2-0123456789abcdef"
    _exe(entry / "bin" / build.BINARY)
    (entry / "build-info.json").write_text(json.dumps({"name": entry.name}))
    return entry / "bin" / build.BINARY


def test_order(tmp_path):
    cache = tmp_path / "cache"
    explicit = _exe(tmp_path / "a" / "qemu")
    env_q = _exe(tmp_path / "b" / "qemu")
    built = _cached_entry(cache)
    env = {"QEMU": str(env_q), "PATH": ""}
    assert discover.discover(str(explicit), env, cache).how == "--qemu"
    assert discover.discover(None, env, cache).path == str(env_q)
    found = discover.discover(None, {"PATH": ""}, cache)
    assert (found.how, found.path) == ("cache", str(built))


def test_nothing_found_is_one_line(tmp_path):
    with pytest.raises(HarnessError) as exc:
        discover.discover(None, {"PATH": str(tmp_path)}, tmp_path / "cache")
    msg = str(exc.value)
    assert "no QEMU with IGVM found" in msg and "igvm-harness qemu build" in msg
    assert "no qemu-system-x86_64 on PATH" in msg


def test_explicit_missing_binary_is_an_error(tmp_path):
    with pytest.raises(HarnessError, match="does not exist"):
        discover.discover(str(tmp_path / "nope"), {}, tmp_path)


def test_path_qemu_used_only_with_igvm(tmp_path, stock_qemu):
    """A PATH holding only Debian's stock QEMU (no IGVM) finds nothing, saying why."""
    from harness.qemu import probe

    caps = probe.probe(stock_qemu, cache=tmp_path / "c")
    found, notes = discover.find(None, {"PATH": os.path.dirname(stock_qemu)}, tmp_path / "empty",
                                 probe_fn=lambda p: probe.probe(p, cache=tmp_path / "c"))
    if caps.igvm_cfg_object:
        assert found is not None and found.how == "PATH"
    else:
        assert found is None
        assert caps.missing("igvm-cfg") in notes


def test_bad_environment_qemu_names_the_variable(tmp_path):
    """$QEMU outranks the cached build (see test_order); when it names nothing
    runnable the error says the value came from the environment."""
    with pytest.raises(HarnessError) as exc:
        discover.discover(None, {"QEMU": str(tmp_path / "nope"), "PATH": ""}, tmp_path)
    assert str(exc.value).startswith("$QEMU: QEMU binary ") and "does not exist" in str(exc.value)
