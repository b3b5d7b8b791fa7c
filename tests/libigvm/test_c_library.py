"""Build libigvm and run its C test programs (``make check``).

The C tests (libigvm/tests/) hold hand-written byte vectors for
every header type and every parse-time error code, and the "QEMU usage"
program that uses each symbol QEMU 10.2's backends/igvm.c takes from
<igvm/igvm.h> and <igvm/igvm_defs.h>.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.libigvm.conftest import LIBIGVM_DIR, _require_toolchain


def test_make_check_passes(tmp_path: Path) -> None:
    _require_toolchain()
    proc = subprocess.run(
        ["make", "-C", str(LIBIGVM_DIR), f"BUILDDIR={tmp_path / 'build'}", "check"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"make check failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert "qemu-usage: ok" in proc.stdout
    assert "test-igvm: all" in proc.stdout


def test_build_leaves_nothing_in_the_tree(tmp_path: Path) -> None:
    _require_toolchain()
    before = sorted(p.relative_to(LIBIGVM_DIR) for p in LIBIGVM_DIR.rglob("*"))
    proc = subprocess.run(
        ["make", "-s", "-C", str(LIBIGVM_DIR), f"BUILDDIR={tmp_path / 'b'}", "all"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    after = sorted(p.relative_to(LIBIGVM_DIR) for p in LIBIGVM_DIR.rglob("*"))
    assert after == before


def test_install_layout_and_pkg_config(tmp_path: Path) -> None:
    """QEMU's meson.build asks pkg-config for 'igvm' >= 0.3.0 and includes <igvm/igvm.h>."""
    _require_toolchain()
    prefix = tmp_path / "prefix"
    proc = subprocess.run(
        ["make", "-s", "-C", str(LIBIGVM_DIR), f"BUILDDIR={tmp_path / 'b'}",
         f"PREFIX={prefix}", "install"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for rel in ("lib/libigvm.a", "include/igvm/igvm.h", "include/igvm/igvm_defs.h",
                "lib/pkgconfig/igvm.pc"):
        assert (prefix / rel).is_file(), rel
    pc = (prefix / "lib/pkgconfig/igvm.pc").read_text()
    assert f"prefix={prefix}\n" in pc
    fields = dict(line.split(": ", 1) for line in pc.splitlines() if ": " in line)
    assert fields["Name"] == "igvm"
    major, minor, _patch = (int(x) for x in fields["Version"].split("."))
    assert (major, minor) >= (0, 3)
    assert fields["Libs"] == "-L${libdir} -ligvm"
    assert fields["Cflags"] == "-I${includedir}"
    if shutil.which("pkg-config"):
        env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib/pkgconfig"))
        for args, want in ((["--exists", "igvm >= 0.3.0"], ""),
                           (["--cflags", "igvm"], f"-I{prefix}/include"),
                           (["--libs", "--static", "igvm"], f"-L{prefix}/lib -ligvm")):
            out = subprocess.run(["pkg-config", *args], env=env, capture_output=True,
                                 text=True, timeout=30)
            assert out.returncode == 0, (args, out.stderr)
            assert out.stdout.strip() == want


def test_relative_prefix_is_refused(tmp_path: Path) -> None:
    _require_toolchain()
    proc = subprocess.run(
        ["make", "-s", "-C", str(LIBIGVM_DIR), f"BUILDDIR={tmp_path / 'b'}",
         "PREFIX=relative/dir", "install"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert "PREFIX must be an absolute path" in proc.stderr


SANITIZE = "-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all"


def test_make_check_under_sanitizers(tmp_path: Path) -> None:
    """The C tests again, with AddressSanitizer and UBSan (memory and UB errors abort)."""
    _require_toolchain()
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    if subprocess.run(["cc", *SANITIZE.split(), "-o", str(tmp_path / "probe"), str(probe)],
                      capture_output=True).returncode != 0:
        pytest.skip("no AddressSanitizer/UBSan runtime for cc")
    proc = subprocess.run(
        ["make", "-C", str(LIBIGVM_DIR), f"BUILDDIR={tmp_path / 'build'}", f"CFLAGS={SANITIZE}",
         "check"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert "test-igvm: all" in proc.stdout and "qemu-usage: ok" in proc.stdout
