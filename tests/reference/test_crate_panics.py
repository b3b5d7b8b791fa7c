"""Where the reference implementation panics, and what that does to QEMU.

igvm 0.5's ``IgvmFile::new_from_binary`` adds the fixed header's
``variable_header_offset`` and ``variable_header_size`` as u32 (lib.rs,
after the fixed header is read): a size that makes the sum wrap past 2^32
passes the "headers end inside the file" check, and the following
``split_at(variable_header_size)`` of the rest of the file panics ("mid >
len").  Through the crate's C API (c_api.rs ``igvm_new_from_binary``, an
``extern "C"`` function, where a panic cannot unwind) the panic aborts the
process: a QEMU linked with the crate dies with SIGABRT instead of
refusing the file.

QEMU's documentation of the behaviour it should have: backends/igvm.c
``qigvm_file_init`` reports "Unable to parse IGVM file <path>: <code>" for a
file the library refuses; the IGVM format makes such a file invalid (the
variable headers must lie inside the file: igvm_defs IGVM_FIXED_HEADER
``variable_header_size``/``total_file_size``).  The own C library refuses
it with IGVMAPI_INVALID_FIXED_HEADER (libigvm/src/parse.c).  Found by the
three-way comparison (test_three_way.py, the seeded corruptions).
"""

from __future__ import annotations

import resource
import signal
import struct
import subprocess
from pathlib import Path

import pytest

from harness.reference import oracle
from tests.libigvm.test_differential import base_native

INVALID_FIXED_HEADER = -16


def wrapping_header_size() -> bytes:
    """A valid native file whose variable header end wraps past 2^32."""
    data = bytearray(base_native())
    vho = struct.unpack_from("<I", data, 8)[0]
    struct.pack_into("<I", data, 12, (1 << 32) - vho + 0x17)  # offset + size = 2^32 + 0x17
    return bytes(data)


def test_the_crate_panics_on_a_wrapping_header_size(oracle_binary):
    answer = oracle.parse_bytes({"f": wrapping_header_size()})["f"]
    assert answer["any"] == {"ok": False, "panic": "mid > len"}
    assert answer["c_api"] == "abort"


def test_the_own_library_refuses_it(igvm_check, tmp_path):
    f = tmp_path / "wrap.igvm"
    f.write_bytes(wrapping_header_size())
    res = subprocess.run([str(igvm_check), str(f)], capture_output=True, text=True, timeout=60)
    assert res.stdout.split()[0] == str(INVALID_FIXED_HEADER), res.stdout


def _qemu(qemu: str, igvm: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [qemu, "-machine", "q35,igvm-cfg=igvm0", "-object", f"igvm-cfg,id=igvm0,file={igvm}",
         "-nodefaults", "-display", "none", "-accel", "tcg", "-S"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=igvm.parent,
        # an abort must not leave a core file behind
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)))


@pytest.mark.qemu
@pytest.mark.requires("igvm-cfg")
def test_qemu_refuses_the_file_with_one_error_line(qemu_binary, qemu_caps, tmp_path):
    """Expected (backends/igvm.c qigvm_file_init): exit 1, 'Unable to parse IGVM file'.
    With the crate linked QEMU aborts (SIGABRT): a known deviation of igvm 0.5."""
    f = tmp_path / "wrap.igvm"
    f.write_bytes(wrapping_header_size())
    res = _qemu(qemu_binary, f)
    lib = (qemu_caps.libigvm or {}).get("origin")
    if lib == "crates.io" and res.returncode == -signal.SIGABRT:
        pytest.xfail("igvm 0.5 panics in new_from_binary (u32 wrap of variable_header_offset + "
                     "variable_header_size, then split_at past the end); its C API cannot "
                     "unwind, so QEMU aborts instead of refusing the file")
    assert res.returncode == 1, (res.returncode, res.stderr[-500:])
    assert f"Unable to parse IGVM file {f}: {INVALID_FIXED_HEADER}" in res.stderr
