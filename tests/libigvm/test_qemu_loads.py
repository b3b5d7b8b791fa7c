"""The QEMU under test, linked with an igvm library, loads IGVM files through
it: data pages, zero pages, parameter areas filled by QEMU (VP count,
environment info, memory map), parameter inserts and required memory all
reach the guest, and a malformed file is refused with the library's code.

Expected values come from QEMU's source: backends/igvm.c
(qigvm_directive_vp_count writes the number of vCPUs as a u32;
qigvm_directive_environment_info sets memory_is_shared = 1; qigvm_file_init
prints "Unable to parse IGVM file <path>: <code>"), hw/misc/debugexit.c (the
exit status of isa-debug-exit is (value << 1) | 1), and the IGVMAPI codes of
igvm_c (IGVMAPI_INVALID_CHECKSUM = -18, IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER
= -11).  The guest is 13 bytes of real-mode code at the reset vector that
reads one byte of the parameter page at 0x10000 and writes it to port 0xf4.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

try:
    from harness.igvm.builder import IgvmBuilder
    from harness.igvm.defs import PlatformType
except ImportError:  # pragma: no cover
    pytest.skip("format library builder not available", allow_module_level=True)

pytestmark = [pytest.mark.qemu, pytest.mark.requires("igvm-cfg")]

DEBUG_EXIT_PORT = 0xF4


def guest_file(byte_offset: int, reserved: int = 0) -> bytes:
    """Native IGVM file whose guest exits with the byte at 0x10000 + byte_offset."""
    b = IgvmBuilder()
    b.platform(PlatformType.NATIVE)
    b.zero_pages(0x0, 4)
    params = b.parameter_area(0x1000)
    b.vp_count(params, 0)
    b.environment_info(params, 4)
    memmap = b.parameter_area(0x1000)
    b.memory_map(memmap, 0)
    b.parameter_insert(0x10000, params)
    b.parameter_insert(0x11000, memmap)
    b.required_memory(0x20000, 0x2000)
    code = bytes([
        0xB8, 0x00, 0x10,                            # mov ax, 0x1000
        0x8E, 0xD8,                                  # mov ds, ax
        0xA0, byte_offset & 0xFF, byte_offset >> 8,  # mov al, [byte_offset]
        0xE6, DEBUG_EXIT_PORT,                       # out 0xf4, al
        0xF4, 0xEB, 0xFD,                            # hlt; jmp hlt
    ])
    page = bytearray(4096)
    page[0xFF0:0xFF0 + len(code)] = code             # reset vector 0xFFFFFFF0
    pd = b.page(0xFFFFF000, bytes(page))
    pd.reserved = reserved
    return b.build()


def vp_context_file() -> bytes:
    """Native file whose IGVM_VHS_VP_CONTEXT starts the BSP in 32-bit flat
    protected mode at 0x1000 (IgvmNativeVpContextX64 field offsets from the
    specification; QEMU loads it in target/i386/igvm.c qigvm_x86_load_context).
    The guest exits with the low byte of the VP count parameter at 0x10000."""
    ctx = bytearray(232)

    def put(offset: int, value: int, size: int) -> None:
        ctx[offset:offset + size] = value.to_bytes(size, "little")

    put(128, 0x1000, 8)        # rip
    put(136, 0x2, 8)           # rflags
    put(168, 0x08, 2)          # code_selector
    put(170, 0xC09B, 2)        # code_attributes: P, S, type 0xB, D/B, G
    put(176, 0xFFFFFFFF, 4)    # code_limit
    put(180, 0x10, 2)          # data_selector
    put(182, 0xC093, 2)        # data_attributes
    put(188, 0xFFFFFFFF, 4)    # data_limit
    put(200, 0x11, 8)          # cr0: PE | ET
    b = IgvmBuilder()
    b.platform(PlatformType.NATIVE)
    params = b.parameter_area(0x1000)
    b.vp_count(params, 0)
    b.parameter_insert(0x10000, params)
    code = bytes([0xA0, 0x00, 0x00, 0x01, 0x00,     # mov al, [0x10000]
                  0xE6, DEBUG_EXIT_PORT,            # out 0xf4, al
                  0xF4, 0xEB, 0xFD])                # hlt; jmp hlt
    b.page(0x1000, code)
    b.vp_context(0, bytes(ctx))
    return b.build()


def run_qemu(qemu: str, igvm: Path, smp: int = 1, mem_mib: int = 256) -> subprocess.CompletedProcess:
    return subprocess.run(
        [qemu, "-machine", "q35,igvm-cfg=igvm0",
         "-object", f"igvm-cfg,id=igvm0,file={igvm}",
         "-nodefaults", "-display", "none", "-accel", "tcg", "-smp", str(smp), "-m", str(mem_mib),
         "-device", f"isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=1"],
        capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize("smp", [1, 3])
def test_vp_count_parameter_reaches_the_guest(qemu_binary: str, tmp_path: Path, smp: int) -> None:
    f = tmp_path / "vpcount.igvm"
    f.write_bytes(guest_file(0))
    proc = run_qemu(qemu_binary, f, smp)
    assert proc.returncode == (smp << 1) | 1, proc.stderr


def test_environment_info_parameter_reaches_the_guest(qemu_binary: str, tmp_path: Path) -> None:
    f = tmp_path / "envinfo.igvm"
    f.write_bytes(guest_file(4))
    proc = run_qemu(qemu_binary, f)
    assert proc.returncode == (1 << 1) | 1, proc.stderr  # memory_is_shared = 1


@pytest.mark.parametrize("mem_mib", [256, 512])
def test_memory_map_parameter_reaches_the_guest(qemu_binary: str, tmp_path: Path,
                                                mem_mib: int) -> None:
    """First IGVM_VHS_MEMORY_MAP_ENTRY (sorted by gpa) is the e820 RAM entry at 0 of
    below_4g_mem_size bytes (hw/i386/pc.c, target/i386/igvm.c); byte 10 of the
    entry is bits 16-23 of number_of_pages (offset 8): (mem_mib << 20 >> 12) >> 16."""
    f = tmp_path / "memmap.igvm"
    f.write_bytes(guest_file(0x1000 + 10))  # area 1 inserted at 0x11000
    proc = run_qemu(qemu_binary, f, mem_mib=mem_mib)
    pages = (mem_mib << 20) >> 12
    assert proc.returncode == (((pages >> 16) & 0xFF) << 1) | 1, proc.stderr


def test_native_vp_context_starts_the_bsp(qemu_binary: str, tmp_path: Path) -> None:
    f = tmp_path / "vpcontext.igvm"
    f.write_bytes(vp_context_file())
    proc = run_qemu(qemu_binary, f, smp=2)
    assert proc.returncode == (2 << 1) | 1, proc.stderr


def test_bad_checksum_refused_with_library_code(qemu_binary: str, tmp_path: Path) -> None:
    data = bytearray(guest_file(0))
    data[20] ^= 0x01  # IGVM_FIXED_HEADER.checksum
    f = tmp_path / "bad-checksum.igvm"
    f.write_bytes(bytes(data))
    proc = run_qemu(qemu_binary, f)
    assert proc.returncode == 1
    assert f"Unable to parse IGVM file {f}: -18" in proc.stderr


def test_invalid_directive_refused_with_library_code(qemu_binary: str, tmp_path: Path) -> None:
    f = tmp_path / "bad-page.igvm"
    f.write_bytes(guest_file(0, reserved=1))  # IGVM_VHS_PAGE_DATA.reserved must be 0
    proc = run_qemu(qemu_binary, f)
    assert proc.returncode == 1
    assert f"Unable to parse IGVM file {f}: -11" in proc.stderr
