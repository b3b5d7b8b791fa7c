"""harness.native: where the C modules are cached, building them for real, and
saying why one is absent (the measurement paths fall back to Python then)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import native
from harness.errors import HarnessError
from harness.native import build


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty harness cache for this test (and for its subprocesses)."""
    monkeypatch.setenv("IGVM_HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(native.ENV_SWITCH, raising=False)
    native.forget()
    yield tmp_path / "cache"
    native.forget()


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_cache_dir_is_the_harness_cache(monkeypatch, tmp_path):
    from harness.qemu.build import cache_root

    for env in ({}, {"XDG_CACHE_HOME": str(tmp_path / "xdg")}, {"IGVM_HARNESS_CACHE": str(tmp_path / "c")}):
        monkeypatch.delenv("IGVM_HARNESS_CACHE", raising=False)
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        assert Path(native.cache_dir()) == cache_root() / "native"


def test_module_path_is_keyed_by_abi_source_and_compile_line(cache, monkeypatch):
    import hashlib
    import importlib.machinery
    import sysconfig

    path = Path(native.module_path("_snpfold"))
    assert path.name == "_snpfold" + sysconfig.get_config_var("EXT_SUFFIX")
    assert path.parent.parent.name == sysconfig.get_config_var("EXT_SUFFIX")[1:-3]  # cpython-311-...
    assert importlib.machinery.EXTENSION_SUFFIXES[0] == sysconfig.get_config_var("EXT_SUFFIX")
    source = Path(native.source_path("_snpfold")).read_bytes()
    assert path.parent.name == hashlib.sha256(
        source + repr((native.CFLAGS, native.LIBS["_snpfold"])).encode()).hexdigest()
    assert path.is_relative_to(cache / "native")
    monkeypatch.setattr(native, "CFLAGS", native.CFLAGS + ("-O3",))
    assert native.module_path("_snpfold") != str(path)


def test_absent_says_why_and_build_makes_it_load(cache):
    mod, line = native.status("_snpfold")
    assert mod is None and "not built" in line and "igvm-harness native build" in line
    r = _cli("native", "status")
    assert r.returncode == 1 and "absent: not built" in r.stdout
    r = _cli("native", "build")
    assert r.returncode == 0, r.stderr
    assert Path(native.module_path("_snpfold")).is_file()
    r = _cli("native", "status", "--json")
    assert r.returncode == 0 and '"present": true' in r.stdout
    native.forget()
    mod = native.load("_snpfold")
    assert mod is not None and mod.chain(bytes(48), 0, [], 4096) == bytes(48)
    # nothing but the module itself was written
    assert [p.name for p in (cache / "native").rglob("*") if p.is_file()] == [Path(native.module_path("_snpfold")).name]
    _, built = build.build("_snpfold")
    assert not built  # present: not rebuilt


def test_switch_turns_the_fold_off(cache, monkeypatch):
    build.build("_snpfold")
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    native.forget()
    mod, line = native.status("_snpfold")
    assert mod is None and f"turned off by {native.ENV_SWITCH}=0" in line
    assert build.ensure("_snpfold") is not None  # the module's own tests still load it
    assert native.load("_snpfold") is None


def test_a_broken_module_file_says_rebuild(cache):
    path = Path(native.module_path("_snpfold"))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an ELF file")
    mod, line = native.status("_snpfold")
    assert mod is None and "does not load" in line and "--force" in line
    build.build("_snpfold", force=True)
    assert native.load("_snpfold") is not None


def test_a_failing_compile_is_one_line_and_leaves_nothing(cache, monkeypatch):
    monkeypatch.setenv("CC", "false")  # a "compiler" that fails without a word
    with pytest.raises(HarnessError, match=r"^building _snpfold failed"):
        build.build("_snpfold")
    left = [p for p in cache.rglob("*") if p.is_file()]
    assert left == []
    r = _cli("native", "build", env=dict(os.environ, CC="false"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("igvm-harness: building _snpfold failed")


def test_no_compiler_is_one_line(cache, monkeypatch):
    monkeypatch.setenv("CC", "no-such-cc-here")
    with pytest.raises(HarnessError, match=r"^no C compiler: 'no-such-cc-here' is not on PATH"):
        build.build("_snpfold")


@pytest.mark.parametrize("stderr,package", [
    ("x.c:31:10: fatal error: Python.h: No such file or directory", "python3-dev"),
    ("x.c:35:10: fatal error: openssl/sha.h: No such file or directory", "libssl-dev"),
    ("/usr/bin/ld: cannot find -lcrypto: No such file or directory", "libssl-dev"),
])
def test_missing_headers_name_the_debian_package(stderr, package):
    assert f"(install {package})" in build._explain("_snpfold", stderr)


def test_the_command_module_is_light():
    """--help imports harness.native.commands: it must not bring hashlib or the
    extension loader (they come with the first lookup)."""
    code = ("import sys, argparse; before = set(sys.modules)\n"  # every command module has argparse
            "import harness.native.commands\n"
            "print(sorted(m for m in set(sys.modules) - before if not m.startswith('harness')))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in ("[]", "['__future__']"), r.stdout
