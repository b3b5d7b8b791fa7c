"""VMSA and native VP context layouts.

Offsets are checked against AMD64 APM vol. 2 table B-4 (VMSA layout for
SEV-ES) and igvm_defs IgvmNativeVpContextX64 (field sizes summed by hand);
decoding is checked against sevctl's own decoding of its QEMU VMSA
(../shared/vectors/sevctl_vmsa_build_kat.json, 'show_text')."""

import base64
import json
from pathlib import Path

import pytest

from harness.igvm.vmsa import NativeVpContextX64, Segment, SevEsVmsa

VECTORS = Path(__file__).resolve().parents[2] / ".." / "shared" / "vectors"

# AMD APM vol. 2, table B-4 offsets
APM_OFFSETS = {
    "es": 0x000, "cs": 0x010, "gdtr": 0x060, "tr": 0x090, "vmpl": 0x0CA, "cpl": 0x0CB,
    "efer": 0x0D0, "xss": 0x140, "cr4": 0x148, "cr3": 0x150, "cr0": 0x158, "dr7": 0x160,
    "dr6": 0x168, "rflags": 0x170, "rip": 0x178, "rsp": 0x1D8, "rax": 0x1F8, "star": 0x200,
    "cr2": 0x240, "g_pat": 0x268, "spec_ctrl": 0x2E0, "rcx": 0x308, "rbx": 0x318,
    "rbp": 0x328, "r15": 0x378, "sev_features": 0x3B0, "virtual_tom": 0x3C8, "xcr0": 0x3E8,
    "x87_dp": 0x400, "mxcsr": 0x408, "x87_fcw": 0x410, "fpreg_x87": 0x420,
    "fpreg_xmm": 0x470, "fpreg_ymm": 0x570,
}

NATIVE_OFFSETS = {  # 18 u64 registers, then IDTR, GDTR, segments, control regs
    "rax": 0, "r15": 120, "rip": 128, "rflags": 136, "idtr_base": 144, "idtr_limit": 152,
    "gdtr_limit": 158, "gdtr_base": 160, "code_selector": 168, "code_limit": 176,
    "data_selector": 180, "data_limit": 188, "gs_base": 192, "cr0": 200, "cr3": 208,
    "cr4": 216, "efer": 224,
}


@pytest.mark.parametrize("name,offset", sorted(APM_OFFSETS.items()))
def test_vmsa_offsets_match_apm(name, offset):
    assert SevEsVmsa.offset_of(name) == offset


@pytest.mark.parametrize("name,offset", sorted(NATIVE_OFFSETS.items()))
def test_native_context_offsets(name, offset):
    assert NativeVpContextX64.offset_of(name) == offset


def test_sizes():
    assert len(SevEsVmsa().to_bytes()) == 4096
    assert len(NativeVpContextX64().to_bytes()) == 232


def test_vmsa_field_round_trip():
    v = SevEsVmsa(rip=0xFFF0, cs=Segment(0xF000, 0x9B, 0xFFFF, 0xFFFF0000), sev_features=1)
    raw = v.to_bytes()
    assert raw[0x178:0x180] == (0xFFF0).to_bytes(8, "little")
    assert raw[0x10:0x20] == bytes.fromhex("00f09b00ffff00000000ffff00000000")
    assert SevEsVmsa.from_bytes(raw) == v
    assert v.nonzero_fields() == ["cs", "rip", "sev_features"]


def test_qemu_allow_list():
    # target/i386/sev.c check_vmsa_supported: rip allowed, dr0 not, bytes past
    # 0x670 are outside QEMU's struct and not checked
    v = SevEsVmsa(rip=1, dr0=1, reserved_0x670=b"\x01" + bytes(2447))
    assert v.qemu_unsupported_fields() == ["dr0"]


def test_native_context_round_trip():
    c = NativeVpContextX64(rip=0x1000, cr0=0x80000011, code_selector=8, efer=0x500)
    raw = c.to_bytes()
    assert raw[128:136] == (0x1000).to_bytes(8, "little")
    assert raw[224:232] == (0x500).to_bytes(8, "little")
    assert NativeVpContextX64.from_bytes(raw + bytes(4096 - 232)) == c


def test_decode_matches_sevctl_show():
    path = VECTORS / "sevctl_vmsa_build_kat.json"
    if not path.exists():
        pytest.skip(f"known-answer vectors absent: no {path}")
    kat = json.loads(path.read_text())
    for case in kat["cases"]:
        raw = base64.b64decode(case["expected_vmsa_b64"])
        v = SevEsVmsa.from_bytes(raw)
        assert v.to_bytes() == raw
        shown = json.loads(kat["show_text"][f"vmsa{case['cpu']}"])
        checked = 0
        for name, value in shown.items():
            if name.startswith("reserved") or not hasattr(v, name):
                continue
            mine = getattr(v, name)
            if isinstance(mine, Segment):
                assert mine.as_dict() == value, name
            else:
                assert mine == value, name
            checked += 1
        assert checked >= 40
        if case["cpu"] == 0:
            assert v.rip == 0xFFF0 and v.cs.base == 0xFFFF0000  # x86 reset vector
        # sevctl's QEMU VMSA only uses fields QEMU synchronises with KVM
        assert v.qemu_unsupported_fields() == []
