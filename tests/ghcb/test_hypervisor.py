"""The hypervisor model's answers, request by request, against the layouts
of the GHCB specification (56421 rev 2.03) and what QEMU/KVM put in them.
Expected values are built here from those layouts, field by field."""

from __future__ import annotations

import struct

import pytest
from unicorn import UC_ARCH_X86, UC_MODE_64, UC_PROT_ALL, Uc

from harness.ghcb.hypervisor import HostConfig, Hypervisor, RunEnd
from harness.ghcb.memory import SHARED_BASE, GuestMemory, Region

RAM = 0x400000
GHCB = 0x200000
# GHCB layout: SW_EXITCODE 0x390, SW_EXITINFO1 0x398, SW_EXITINFO2 0x3A0,
# SW_SCRATCH 0x3A8, RAX 0x1F8, RCX 0x308, valid bitmap 0x3F0, shared buffer
# 0x800, protocol version 0xFFA, usage 0xFFC.
OFF = {"rax": 0x1F8, "rcx": 0x308, "rdx": 0x310, "rbx": 0x318, "code": 0x390, "info1": 0x398,
       "info2": 0x3A0, "scratch": 0x3A8}


def _hv(snp: bool = False, **host) -> Hypervisor:
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(SHARED_BASE, RAM, UC_PROT_ALL)
    mem = GuestMemory(RAM, snp, [Region(0, RAM, "RAM")])
    hv = Hypervisor(HostConfig(snp=snp, **host), mem, uc)
    if snp:
        hv.registered_gpa = GHCB
        mem.rmp_shared.add(GHCB >> 12)
    return hv


def _ghcb(hv: Hypervisor, version: int = 2, usage: int = 0, **fields) -> None:
    valid = 0
    for name, value in fields.items():
        hv.uc.mem_write(SHARED_BASE + GHCB + OFF[name], struct.pack("<Q", value))
        valid |= 1 << (OFF[name] // 8)
    hv.uc.mem_write(SHARED_BASE + GHCB + 0x3F0, valid.to_bytes(16, "little"))
    hv.uc.mem_write(SHARED_BASE + GHCB + 0xFFA, struct.pack("<HI", version, usage))


def _field(hv: Hypervisor, name: str) -> int:
    return struct.unpack("<Q", hv.uc.mem_read(SHARED_BASE + GHCB + OFF[name], 8))[0]


def test_sev_information():
    # GHCBData[63:48] max, [47:32] min, [31:24] C-bit, [11:0] 0x001
    assert _hv(cbit=47, ghcb_max=2).msr_protocol(0x002) == (2 << 48) | (1 << 32) | (47 << 24) | 0x001


def test_cpuid_request_8000001f_ebx():
    # QEMU cpu_x86_cpuid: EBX[5:0] C-bit, EBX[11:6] reduced-phys-bits;
    # request [63:32] function, [31:30] register (1 = EBX); answer 0x005,
    # [31:30] the register again, [63:32] the value
    hv = _hv(cbit=51, reduced_phys_bits=5)
    assert hv.msr_protocol((0x8000_001F << 32) | (1 << 30) | 0x004) \
        == ((51 | 5 << 6) << 32) | (1 << 30) | 0x005
    # EAX: SEV (bit 1) and SEV-ES (bit 3); SNP adds bit 4
    assert hv.msr_protocol((0x8000_001F << 32) | 0x004) >> 32 == 0x2 | 0x8
    assert _hv(snp=True).msr_protocol((0x8000_001F << 32) | 0x004) >> 32 == 0x2 | 0x8 | 0x10


def test_snp_only_requests_end_an_sev_es_guest():
    with pytest.raises(RunEnd) as e:
        _hv().msr_protocol((GHCB >> 12 << 12) | 0x012)
    assert e.value.status == "terminated" and "GHCB GPA Registration" in e.value.reason


def test_registration_and_page_state_change():
    hv = _hv(snp=True)
    assert hv.msr_protocol(0x300000 | 0x012) == 0x300000 | 0x013
    assert hv.registered_gpa == 0x300000
    # [51:12] GFN, [55:52] 2 = shared -> 0x015 with error [63:32] 0
    assert hv.msr_protocol((2 << 52) | 0x300000 | 0x014) == 0x015
    assert 0x300 in hv.mem.rmp_shared
    assert hv.msr_protocol((7 << 52) | 0x300000 | 0x014) >> 32 != 0     # no such operation


def test_termination_request_names_set_and_code():
    with pytest.raises(RunEnd) as e:
        _hv().msr_protocol((0x42 << 16) | (3 << 12) | 0x100)
    assert e.value.status == "terminated" and e.value.guest_status == 0x42
    assert "reason code set 0x3, reason code 0x42" in e.value.reason


def test_ioio_out_to_com1_and_debug_exit():
    hv = _hv()
    # EXITINFO1: [31:16] port, bit 4 8-bit data, bit 7 16-bit address, bit 0 clear = OUT
    _ghcb(hv, code=0x7B, info1=(0x3F8 << 16) | 0x90, info2=0, rax=ord("Z"))
    hv.ghcb_exit(GHCB, 0)
    assert hv.console == b"Z" and _field(hv, "info1") == 0
    _ghcb(hv, code=0x7B, info1=(0x501 << 16) | 0x90, info2=0, rax=0x2A)
    with pytest.raises(RunEnd) as e:
        hv.ghcb_exit(GHCB, 0)
    assert e.value.status == "exited" and e.value.exit_status == 85


def test_ioio_in_line_status_and_unassigned_port():
    hv = _hv()
    _ghcb(hv, code=0x7B, info1=(0x3FD << 16) | 0x91, info2=0)
    hv.ghcb_exit(GHCB, 0)
    assert _field(hv, "rax") & 0xFF == 0x60            # THRE | TEMT
    _ghcb(hv, code=0x7B, info1=(0x1234 << 16) | 0x41, info2=0)   # 32-bit IN
    hv.ghcb_exit(GHCB, 0)
    assert _field(hv, "rax") & 0xFFFF_FFFF == 0xFFFF_FFFF        # QEMU unassigned_io_read


def test_string_ioio_through_the_shared_buffer():
    hv = _hv()
    hv.uc.mem_write(SHARED_BASE + GHCB + 0x800, b"hey")
    # STR (bit 2), 8-bit, OUT; SW_EXITINFO2 = count; scratch in the shared buffer
    _ghcb(hv, code=0x7B, info1=(0x3F8 << 16) | 0x94, info2=3, scratch=GHCB + 0x800)
    hv.ghcb_exit(GHCB, 0)
    assert hv.console == b"hey"


def test_mmio_read_and_write():
    hv = _hv()
    _ghcb(hv, code=0x8000_0002, info1=0xFEC0_0000, info2=4, scratch=GHCB + 0x800)
    hv.ghcb_exit(GHCB, 0)
    assert _field(hv, "info1") == 0 and any("MMIO write 0xfec00000" in n for n in hv.log)
    hv.uc.mem_write(SHARED_BASE + GHCB + 0x800, b"\xff" * 8)
    _ghcb(hv, code=0x8000_0001, info1=0xFEC0_0000, info2=8, scratch=GHCB + 0x800)
    hv.ghcb_exit(GHCB, 0)
    assert bytes(hv.uc.mem_read(SHARED_BASE + GHCB + 0x800, 8)) == bytes(8)   # unassigned: 0
    # more than 8 bytes in version 2: GHCB_ERR_INVALID_INPUT (5), answer 2 = malformed
    _ghcb(hv, code=0x8000_0001, info1=0xFEC0_0000, info2=16, scratch=GHCB + 0x800)
    hv.ghcb_exit(GHCB, 0)
    assert (_field(hv, "info1"), _field(hv, "info2")) == (2, 5)


@pytest.mark.parametrize("fields, error", [
    ({"code": 0x7B, "info1": 0x3F8 << 16 | 0x90, "info2": 0}, 4),            # RAX not valid: MISSING_INPUT
    ({"code": 0x8000_0001, "info1": 0, "info2": 4, "scratch": GHCB + 0x10}, 3),   # INVALID_SCRATCH_AREA
    # PSC in an SEV-ES guest: KVM's input check (sev_es_validate_vmgexit) fails it
    ({"code": 0x8000_0010, "info1": 0, "info2": 0, "scratch": GHCB + 0x800}, 4),
    ({"code": 0x1234, "info1": 0, "info2": 0}, 6),                            # no such event
])
def test_malformed_requests(fields, error):
    hv = _hv()
    _ghcb(hv, **fields)
    hv.ghcb_exit(GHCB, 0)
    assert (_field(hv, "info1"), _field(hv, "info2")) == (2, error)
    assert hv.findings and hv.findings[0].exit_code == fields["code"]


def test_psc_through_the_ghcb():
    hv = _hv(snp=True)
    # header cur 0, end 1; entries: GFN 0x300 -> shared, GFN 0x301 -> shared
    entries = [(2 << 52) | (0x300 << 12), (2 << 52) | (0x301 << 12)]
    hv.uc.mem_write(SHARED_BASE + GHCB + 0x800, struct.pack("<HHI2Q", 0, 1, 0, *entries))
    _ghcb(hv, code=0x8000_0010, info1=0, info2=0, scratch=GHCB + 0x800)
    hv.ghcb_exit(GHCB, 0)
    assert {0x300, 0x301} <= hv.mem.rmp_shared and _field(hv, "info2") == 0
    assert struct.unpack("<H", hv.uc.mem_read(SHARED_BASE + GHCB + 0x800, 2))[0] == 2   # cur_entry


def test_unregistered_ghcb_fails_kvm_run_on_snp():
    hv = _hv(snp=True)
    hv.registered_gpa = None
    _ghcb(hv, code=0x7B, info1=0x3F8 << 16 | 0x90, info2=0, rax=1)
    with pytest.raises(RunEnd) as e:
        hv.ghcb_exit(GHCB, 0)
    assert e.value.status == "kvm-error" and "GHCB GPA Registration" in e.value.reason
