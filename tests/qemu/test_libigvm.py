"""Which igvm library QEMU links: choosing it, building the crate's, naming it.

The crate's library is built for real (cargo, crates.io, cbindgen: set-up
built it already, so this is the cache) and used the way QEMU uses it:
libigvm/tests/qemu_usage.c (every symbol QEMU 10.2's backends/igvm.c takes
from <igvm/igvm.h> and <igvm/igvm_defs.h>) compiles against the headers
cbindgen generated from the crate, with QEMU's warning flags and -Werror, and
runs against the crate's static library.  Where cargo or crates.io is
missing those tests skip naming it.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import cache, cargo
from harness.errors import HarnessError
from harness.qemu import build, libigvm
from tests.libigvm.conftest import libigvm_build  # noqa: F401  (fixture: the own library, built)

ROOT = Path(__file__).resolve().parents[2]
# QEMU 10.2's C flags for its own code (meson.build qemu_common_flags, warn_flags), as
# libigvm/Makefile's qemu-usage target uses them
QEMU_FLAGS = ("-std=gnu11 -fno-strict-aliasing -fno-common -fwrapv -Wall -Wextra -Werror "
              "-Wempty-body -Wendif-labels -Wexpansion-to-defined -Wformat-security -Wformat-y2k "
              "-Wignored-qualifiers -Wimplicit-fallthrough=2 -Winit-self -Wmissing-format-attribute "
              "-Wmissing-prototypes -Wnested-externs -Wold-style-declaration -Wold-style-definition "
              "-Wredundant-decls -Wshadow=local -Wstrict-prototypes -Wtype-limits -Wundef -Wvla "
              "-Wwrite-strings -Wno-missing-include-dirs -Wno-psabi").split()


@pytest.fixture(scope="module")
def crate_lib() -> libigvm.Libigvm:
    """The crate's library installed in the harness cache (built once; set-up built it)."""
    try:
        lib = libigvm.choose("crates.io")
    except cargo.Unavailable as exc:
        pytest.skip(f"no igvm crate library: {exc}")
    with open(cache.path(cache.LIBIGVM, "test.log"), "w") as log:
        try:
            return libigvm.ensure(lib, cache.root(), log, build.Progress(io.StringIO()))
        except cargo.Unavailable as exc:
            pytest.skip(f"no igvm crate library: {exc}")


def _prefix(lib: libigvm.Libigvm) -> Path:
    return Path(lib.pkgconfig_dir).parent.parent


def test_crate_library_is_installed_with_its_record(crate_lib):
    p = _prefix(crate_lib)
    rec = json.loads((p / "libigvm.json").read_text())
    lock = cargo.lock_packages(ROOT / "tools" / "igvm-c" / "Cargo.lock")
    assert rec["origin"] == "crates.io" and rec["version"] == lock["igvm"]["version"]
    assert rec["checksum"] == lock["igvm"]["checksum"]  # the registry's, from the lock
    pc = (p / "lib" / "pkgconfig" / "igvm.pc").read_text()
    assert f"Version: {rec['version']}" in pc and "-ligvm" in pc
    res = subprocess.run(["pkg-config", "--atleast-version=0.3.0", "igvm"], check=False,
                         env={"PKG_CONFIG_PATH": crate_lib.pkgconfig_dir, "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0  # what QEMU's meson.build asks: igvm >= 0.3.0


def test_generated_headers_carry_qemus_names(crate_lib):
    inc = _prefix(crate_lib) / "include" / "igvm"
    api, defs = (inc / "igvm.h").read_text(), (inc / "igvm_defs.h").read_text()
    assert "cbindgen" in api and "IGVM_HEADER_SECTION_DIRECTIVE" in api
    assert " HEADER_SECTION_" not in api.replace("IGVM_HEADER_SECTION_", "")
    assert "IGVM_INVALID = 0" in defs and "IGVM_MEMORY_MAP_ENTRY_TYPE_PERSISTENT" in defs
    assert "IgvmNativeVpContextX64" not in defs  # QEMU's target/i386/igvm.c defines its own


def test_qemu_usage_compiles_and_runs_against_the_crate(crate_lib, tmp_path):
    """Every symbol QEMU uses, compiled against cbindgen's headers with QEMU's flags,
    linked with the crate's static library and its native libraries, and run."""
    if shutil.which("cc") is None:
        pytest.fail("no C compiler (set-up installs build-essential)")
    p = _prefix(crate_lib)
    libs = subprocess.run(["pkg-config", "--libs", "igvm"], capture_output=True, text=True,
                          env={"PKG_CONFIG_PATH": crate_lib.pkgconfig_dir, "PATH": "/usr/bin:/bin"},
                          check=True).stdout.split()
    exe = tmp_path / "qemu-usage"
    res = subprocess.run(["cc", *QEMU_FLAGS, f"-I{p / 'include'}", "-o", str(exe),
                          str(ROOT / "libigvm" / "tests" / "qemu_usage.c"), *libs],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "qemu-usage: ok" in run.stdout, run.stdout + run.stderr
    found = libigvm.of_binary(exe)  # the static link is recognised in the binary itself
    assert found["origin"] == "crates.io" and found["version"] == crate_lib.version


def test_own_library_is_recognised_in_a_static_link(libigvm_build, tmp_path):
    exe = tmp_path / "qemu-usage-own"
    res = subprocess.run(["cc", f"-I{ROOT / 'libigvm' / 'include'}", "-o", str(exe),
                          str(ROOT / "libigvm" / "tests" / "qemu_usage.c"),
                          str(libigvm_build / "libigvm.a")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    found = libigvm.of_binary(exe)
    assert found["origin"] == "own" and found["version"] == libigvm.own_version(ROOT / "libigvm")


def test_binary_without_a_library(tmp_path):
    f = tmp_path / "true"
    shutil.copy("/bin/true", f)
    assert libigvm.of_binary(f)["origin"] == "none"


def test_build_record_comes_first(tmp_path):
    entry = tmp_path / "qemu-x"
    (entry / "bin").mkdir(parents=True)
    (entry / "bin" / "qemu-system-x86_64").write_bytes(b"\x7fELF")
    (entry / "build-info.json").write_text(json.dumps(
        {"libigvm": "crates.io-igvm-0.5.0-abc", "libigvm_info": {"origin": "crates.io",
                                                                 "version": "0.5.0"}}))
    got = libigvm.of_binary(entry / "bin" / "qemu-system-x86_64")
    assert got["origin"] == "crates.io" and "build record" in got["how"]
    # a record older than libigvm_info: the identity tells the origin
    (entry / "build-info.json").write_text(json.dumps({"libigvm": "bundled-0123456789abcdef"}))
    got = libigvm.of_binary(entry / "bin" / "qemu-system-x86_64")
    assert got["origin"] == "own" and "identity only" in got["how"]


def test_auto_falls_back_to_the_own_library_naming_why(monkeypatch):
    monkeypatch.setattr(libigvm, "system_version", lambda: None)

    def no_cargo():
        raise cargo.Unavailable("no cargo (a Rust toolchain)")

    monkeypatch.setattr(cargo, "require_cargo", no_cargo)
    lib = libigvm.choose("auto")
    assert lib.origin == "own" and lib.detail["fallback"] == "no cargo (a Rust toolchain)"
    assert libigvm.describe(lib.as_dict()).startswith("own libigvm ")
    assert "fallback: no cargo" in lib.describe()
    with pytest.raises(cargo.Unavailable):
        libigvm.choose("crates.io")  # a named origin is never substituted
    with pytest.raises(HarnessError, match="--libigvm must be one of"):
        libigvm.choose("vendored")


def test_unreachable_registry_falls_back_at_build_time(monkeypatch, tmp_path):
    """auto chose the crate, then `cargo fetch` finds no registry: the own library is
    built and linked instead, the reason kept in its record."""
    monkeypatch.setattr(libigvm, "system_version", lambda: None)
    try:
        lib = libigvm.choose("auto")
    except cargo.Unavailable as exc:
        pytest.skip(f"no igvm crate library: {exc}")
    if lib.origin != "crates.io":
        pytest.skip(f"no igvm crate library: {lib.detail.get('fallback')}")

    def offline(crate, log, phase):
        raise cargo.Unavailable("crates.io unreachable for igvm-c (cargo fetch: stub)")

    monkeypatch.setattr(cargo, "fetch", offline)
    with open(tmp_path / "log", "w") as log:
        got = libigvm.prepare("auto", tmp_path / "cache", log, build.Progress(io.StringIO()))
    assert got.origin == "own" and "crates.io unreachable" in got.detail["fallback"]
    assert (Path(got.pkgconfig_dir) / "igvm.pc").is_file()
    assert libigvm.installed_info(Path(got.pkgconfig_dir).parent.parent)["origin"] == "own"


def test_qemu_names_renames_whole_words_only():
    text = "enum { HEADER_SECTION_PLATFORM, INVALID = 0, IGVMAPI_INVALID_FILE = -3, INVALIDX };"
    out = libigvm.qemu_names(text, ("HEADER_SECTION_PLATFORM", "INVALID"))
    assert out == ("enum { IGVM_HEADER_SECTION_PLATFORM, IGVM_INVALID = 0, "
                   "IGVMAPI_INVALID_FILE = -3, INVALIDX };")


def test_probe_names_the_library_of_the_qemu_under_test(qemu_caps):
    lib = qemu_caps.libigvm
    assert lib and lib["origin"] in libigvm.ORIGINS and lib["how"]
    line = next(l for l in qemu_caps.summary_lines() if l.startswith("libigvm:"))
    assert libigvm.describe(lib) in line


def test_a_checkout_without_the_parts_says_so_in_one_line(monkeypatch, tmp_path):
    """A non-editable install carries no libigvm/ or tools/: one line naming the way out."""
    from harness import tree

    monkeypatch.setenv(tree.ENV, str(tmp_path))
    with pytest.raises(HarnessError) as e:
        libigvm.choose("own")
    msg = str(e.value)
    assert "libigvm/ is not here" in msg and tree.ENV in msg and "\n" not in msg
    assert not tree.has("tools/igvm-oracle")
