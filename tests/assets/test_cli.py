"""``igvm-harness firmware list|fetch`` on the real cache, and /etc/apt untouched.

The real cache is what set-up fetched (``igvm-harness firmware fetch``); the
hashes are recomputed here with hashlib and compared with the list and with
harness/assets/pins.toml (whose values were computed with sha256sum).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import assets
from harness.assets import pins, store


def _cli(*argv, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "harness.cli", *argv], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})})


def _fetched() -> dict:
    entries = store.load()
    if not entries:
        pytest.skip("no asset fetched into the harness cache: run `igvm-harness firmware fetch`")
    return entries


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        h.update(f"{p.relative_to(root)}\0{st.st_mode}\0{st.st_mtime_ns}\0".encode())
        if p.is_file() and not p.is_symlink():
            h.update(p.read_bytes())
        elif p.is_symlink():
            h.update(os.readlink(p).encode())
    return h.hexdigest()


def test_list_json_names_what_is_installed():
    _fetched()
    res = _cli("firmware", "list", "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert set(rows) == set(assets.NAMES)
    repo_pins = pins.load()
    for name, r in rows.items():
        if r["status"] == "missing":
            continue
        path = Path(r["path"])
        assert r["sha256"] == _sha(path), name
        info = assets.info(name)
        assert (info.path, info.version, info.sha256) == (path, r["version"], r["sha256"])
        if r["status"] == "pinned":
            assert (r["version"], r["sha256"]) == (repo_pins[name].version,
                                                   repo_pins[name].sha256)
        else:
            assert r["status"] in ("unpinned", "stale")


def test_list_text_has_one_row_per_asset():
    _fetched()
    res = _cli("firmware", "list")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert [l.split()[0] for l in lines] == list(assets.NAMES)


def test_rerun_is_served_from_the_cache():
    entries = _fetched()
    names = [n for n in assets.NAMES if n in entries]
    res = _cli("firmware", "fetch", *names)
    assert res.returncode == 0, res.stderr
    for n in names:
        assert f"{n}: cached" in res.stderr, res.stderr
    assert "downloading" not in res.stderr


@pytest.mark.parametrize("cmd", ["fetch", "list"])
def test_unknown_name_is_one_line(cmd):
    res = _cli("firmware", cmd, "ovmf-amdsev", "no-such-firmware")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith("igvm-harness: unknown asset 'no-such-firmware'")


def test_empty_cache_lists_missing(tmp_path):
    res = _cli("firmware", "list", "--json", env={"IGVM_HARNESS_CACHE": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    assert {r["status"] for r in json.loads(res.stdout)} == {"missing"}


def test_fetch_leaves_etc_apt_unchanged():
    """A real fetch through apt (resolve, download, verify) and the QEMU
    source's apt steps change nothing under /etc/apt."""
    entries = _fetched()
    etc = Path("/etc/apt")
    before = _tree_digest(etc)
    name = "ovmf-amdsev" if "ovmf-amdsev" in entries else next(iter(entries))
    res = _cli("firmware", "fetch", "--refresh", name)
    assert res.returncode == 0, res.stderr
    assert "downloading" in res.stderr
    from harness.qemu import source
    cfg = source.apt_config()
    cfg.ensure()
    source.available_versions(cfg=cfg)
    assert _tree_digest(etc) == before
    assert cfg.sources_file.is_relative_to(store.root().parent)


def test_interrupted_fetch_leaves_no_temporary_files():
    """Ctrl-C while the kernel package downloads or unpacks: exit 130 (or 0 if
    it had finished), no ``.tmp-*`` directory, the installed kernel intact."""
    import signal
    entries = _fetched()
    if "linux" not in entries:
        pytest.skip("asset linux not fetched: run `igvm-harness firmware fetch`")
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "firmware", "fetch",
                             "--refresh", "linux"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr
        for line in proc.stderr:
            if "downloading" in line:
                proc.send_signal(signal.SIGINT)
                break
        rc = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc in (130, 0)
    assert not list(store.root().glob(".tmp-*"))
    info = assets.info("linux")
    assert _sha(info.path) == info.sha256
