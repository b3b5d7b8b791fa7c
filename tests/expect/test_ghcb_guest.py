"""The SEV-ES/SEV-SNP payload variant and the reset-vector entry assemble,
link and contain what the GHCB specification and the x86 reset state need.
(They run only on SEV hardware / in the native matrix cells; this checks
the images themselves.)"""

from __future__ import annotations

import shutil
import struct

import pytest

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("as", "ld", "objcopy", "nm")),
    reason="binutils (as, ld, objcopy, nm) not installed")

VMGEXIT = bytes.fromhex("f30f01d9")          # AMD APM vol. 3: VMGEXIT = F3 0F 01 D9
GHCB_MSR = struct.pack("<I", 0xC0010130)     # GHCB spec: MSR_AMD64_SEV_ES_GHCB


@pytest.fixture(scope="module")
def images():
    from harness.matrix.guests import guest_images
    return guest_images()


def test_ghcb_payload_replaces_only_the_io_seam(images):
    plain, ghcb = images["payload64"], images["payload64-ghcb"]
    for sym in ("ghcb_putc", "ghcb_exit", "_start", "io_putc", "io_exit"):
        assert sym in ghcb.symbols, sym
    assert ghcb.entry == plain.entry == 0x100000
    data = ghcb.data
    assert data.count(VMGEXIT) >= 2 and GHCB_MSR in data
    # the shared code (payload64.s) is laid out identically in both images
    shared = [s for s in ("_start", "cfg_init", "io_putc", "io_exit", "halt_forever")
              if s in plain.symbols]
    assert len(shared) >= 3
    assert all(plain.symbols[s] == ghcb.symbols[s] for s in shared)


def test_reset_long_page(images):
    page = images["reset-long"].data
    assert len(page) == 4096
    # 0xFFFFFFF0 (offset 0xFF0) must be a near jump (E9 rel16 in real mode)
    # landing on the code at the start of the page (CS offset 0xF000)
    assert page[0xFF0] == 0xE9
    rel = int.from_bytes(page[0xFF1:0xFF3], "little")
    assert (0xFFF3 + rel) & 0xFFFF == images["reset-long"].symbols["start"]
    # it never uses CPUID (0F A2) or port I/O (E4-E7, EC-EF), which #VC under SEV-ES
    img = images["reset-long"]
    long_entry = img.symbols["long_entry"] - 0xF000
    code_end = img.symbols["gdt"] - 0xF000
    text = _disasm(img.path, 0, long_entry, "i8086") + _disasm(img.path, long_entry, code_end,
                                                                "i386:x86-64")
    assert "lgdt" in text and "wrmsr" in text and "ljmp" in text
    for bad in ("cpuid", "\tin ", "\tout ", "\tins", "\touts"):
        assert bad not in text, bad
    # EFER is read-modified-written, never written whole: under SEV-ES/SNP the
    # reset EFER has SVME set and clearing it fails the next VMRUN
    # (tests/ghcb/test_payloads.py runs it); EFER reads are not intercepted
    # (KVM sev_es_recalc_msr_intercepts), so RDMSR of EFER raises no #VC
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if "wrmsr" in line)
    assert "rdmsr" in "".join(lines[at - 3:at]) and "or " in "".join(lines[at - 2:at])


def _disasm(path, start: int, stop: int, machine: str) -> str:
    import subprocess
    objdump = shutil.which("objdump")
    if not objdump:
        pytest.skip("objdump (binutils) not installed")
    return subprocess.run([objdump, "-D", "-b", "binary", "-m", machine,
                           f"--start-address={start}", f"--stop-address={stop}", str(path)],
                          capture_output=True, text=True, check=True).stdout
