"""Native IGVM boots: code inside the file runs and sees what the file
promised (CPU state from the VP context, pages, parameters).

Expected values come from where the test set them (the VP context it built,
-smp, -m, the bytes it placed) or from QEMU's own e820 table read by the
guest through fw_cfg, never from what the harness printed.
"""

from __future__ import annotations

import os

import pytest

from harness.fixtures.native import (
    CODE_SEL, DATA_SEL, EFER_LMA, EFER_LME, GDT_GPA, PML4_GPA, gdt,
)
from harness.guests.protocol import TaskOp, qword_digest
from harness.qemu.outcome import Status

pytestmark = [pytest.mark.platforms("native"), pytest.mark.qemu]

MACHINES = ["q35", "pc"]


def booted(out):
    assert out.status is Status.BOOTED, out.summary()
    assert out.report.done, f"guest did not finish; console tail:\n{out.tail()}"
    return out.report


# Distinct values for every register the native VP context carries.
GPRS = {name: 0x1111_0000_0000_0000 * (i + 1) + 0x100 * i + 0xA5
        for i, name in enumerate("rax rbx rcx rdx rsi rdi rbp r8 r9 r10 r11 r12 r13 r14 r15"
                                 .split())}
RFLAGS = 0x2 | 0x1 | 0x4 | 0x40 | 0x80 | 0x800     # CF PF ZF SF OF (+ reserved bit 1)
RSP = 0xFF80


@pytest.mark.parametrize("machine", MACHINES)
def test_vp_context_enters_long_mode_with_given_registers(boot, long_image, accel, machine):
    img = long_image(regs=dict(GPRS, rflags=RFLAGS, rsp=RSP))
    ctx = img.context.fields(img.guest.entry)
    rep = booted(boot(img.build(), machine=machine))
    b = rep.one("boot")
    assert b["mode"] == 64
    assert b["rip"] == ctx["rip"]                 # entered exactly where the context said
    assert b["efer"] & (EFER_LME | EFER_LMA) == EFER_LME | EFER_LMA
    assert b["cr0"] == ctx["cr0"] and b["cr4"] == ctx["cr4"]
    assert b["cr3"] == PML4_GPA
    assert b["cs"] == CODE_SEL and b["ds"] == DATA_SEL and b["ss"] == DATA_SEL
    assert b["gdtr_base"] == GDT_GPA and b["gdtr_limit"] == len(gdt()) - 1
    assert b["idtr_base"] == 0 and b["idtr_limit"] == 0
    assert b["rsp"] == RSP
    assert b["rflags"] == RFLAGS
    regs = rep.one("regs")
    for name, value in GPRS.items():
        assert regs[name] == value, name


@pytest.mark.parametrize("machine", MACHINES)
def test_exit_status_reaches_qemu(boot, long_image, accel, machine):
    rep_out = boot(long_image(exit_status=0x5A).build(), machine=machine)
    booted(rep_out)
    assert rep_out.report.status == 0x5A
    assert rep_out.exit_code == (0x5A << 1) | 1   # hw/misc/debugexit.c


# -smp argument -> number of present vCPUs (QEMU's -smp: the product of the
# topology, capped by cpus=; maxcpus only adds hot-pluggable slots).
SMP = [("1", 1), ("2", 2), ("4", 4), ("8", 8), ("2,maxcpus=4", 2),
       ("sockets=2,cores=2,threads=1", 4)]


@pytest.mark.parametrize("smp,vps", SMP, ids=[s for s, _ in SMP])
@pytest.mark.parametrize("machine", MACHINES)
def test_vp_count_equals_smp(boot, long_image, accel, smp, vps, machine):
    img = long_image()
    img.vp_count()
    cpus = {}
    out = boot(img.build(), smp=smp, machine=machine,
               prelaunch=lambda qr: cpus.update(n=len(qr.command("query-cpus-fast"))))
    # backends/igvm.c qigvm_directive_vp_count counts CPU_FOREACH
    assert booted(out).one("vpcount")["n"] == vps
    assert cpus["n"] == vps


def expected_ram(machine: str, ram: int) -> list[tuple[int, int]]:
    """RAM ranges QEMU lays out for -m ``ram``: hw/i386/pc_q35.c pc_q35_init
    keeps 0xB0000000 below 4 GiB unless RAM reaches that, then 2 GiB;
    hw/i386/pc_piix.c pc_init1 keeps 0xE0000000 unless RAM reaches that,
    then (gigabyte_align) 3 GiB; the rest starts at 4 GiB (pc.c
    pc_memory_init; the AMD 1 TiB relocation needs far more RAM)."""
    if machine == "q35":
        lowmem = 0x80000000 if ram >= 0xB0000000 else 0xB0000000
    else:
        lowmem = 0xC0000000 if ram >= 0xE0000000 else 0xE0000000
    if ram < lowmem:
        return [(0, ram)]
    return [(0, lowmem), (1 << 32, ram - lowmem)]


# Sizes on both sides of each machine's split point (q35: 2816 MiB,
# pc: 3584 MiB).
@pytest.mark.parametrize("memory_mib", [128, 2815, 2816, 3583, 3584, 4096])
@pytest.mark.parametrize("machine", MACHINES)
def test_memory_map_equals_e820(boot, long_image, accel, memory_mib, machine):
    img = long_image()
    img.memory_map()
    img.task(TaskOp.E820)
    rep = booted(boot(img.build(), memory=f"{memory_mib}M", machine=machine))
    e820 = rep.table("e820")
    assert e820 and rep.one("e820", count=len(e820))
    # QEMU's RAM layout, from the machine code, against the e820 it exports
    ram = sorted((e["addr"], e["len"]) for e in e820 if e["type"] == 1)
    assert ram == expected_ram(machine, memory_mib << 20)
    # QEMU converts its e820 table (target/i386/igvm.c qigvm_x86_get_mem_map_entry)
    # E820_RAM -> MEMORY (0), E820_RESERVED -> PLATFORM_RESERVED (1) in
    # backends/igvm.c qigvm_directive_memory_map, sorted by GPA.
    to_igvm = {1: 0, 2: 1}
    expected = sorted((e["addr"], e["len"] >> 12, to_igvm[e["type"]]) for e in e820)
    mmap = rep.table("mmap")
    assert [(m["gpa"], m["pages"], m["type"]) for m in mmap] == expected
    assert all(m["flags"] == 0 for m in mmap)
    assert rep.one("mmap", count=len(mmap))


@pytest.mark.parametrize("machine", MACHINES)
def test_environment_info_as_qemu_documents(boot, long_image, accel, machine):
    img = long_image()
    img.environment_info()
    rep = booted(boot(img.build(), machine=machine))
    # backends/igvm.c qigvm_directive_environment_info sets memory_is_shared
    # (bit 0 of IgvmEnvironmentInfo); the parameter area starts zeroed
    # (g_malloc0), so every reserved bit is 0.
    assert rep.one("envinfo")["value"] == 0x1


def _pattern(seed: int, size: int) -> bytes:
    return bytes(((i * 31 + seed) ^ (i >> 8)) & 0xFF for i in range(size))


OUTSIDE_RAM = 0x1000_0000     # 256 MiB: beyond -m 128M, below the PCI hole


@pytest.mark.parametrize("machine", MACHINES)
def test_zero_pages_read_as_zero(boot, long_image, accel, machine):
    img = long_image()
    b, m = img.builder, img.mask
    data = _pattern(7, 4096)
    b.page(0x300000, data, mask=m)                  # a data page between zero pages
    b.zero_pages(0x301000, 4, mask=m)
    b.zero_pages(OUTSIDE_RAM, 2, mask=m)            # new RAM region (qigvm_prepare_memory)
    b.page(OUTSIDE_RAM + 0x2000, data, mask=m)
    img.task(TaskOp.SUM, 0x300000, 0x1000)
    img.task(TaskOp.SUM, 0x301000, 0x4000)
    img.task(TaskOp.SUM, OUTSIDE_RAM, 0x2000)
    img.task(TaskOp.SUM, OUTSIDE_RAM + 0x2000, 0x1000)
    rep = booted(boot(img.build(), memory="128M", machine=machine))
    sums = {r["gpa"]: r for r in rep.all("sum")}
    want = qword_digest(data)
    for gpa in (0x300000, OUTSIDE_RAM + 0x2000):
        assert (sums[gpa]["sum"], sums[gpa]["hash"], sums[gpa]["nonzero"]) == want
    for gpa in (0x301000, OUTSIDE_RAM):
        assert sums[gpa]["nonzero"] == 0 and sums[gpa]["sum"] == 0


def spans(size: int, accel: str) -> list[tuple[int, int]]:
    """(offset, length) pieces of a range the guest checks.  TCG checks all
    of it.  Under KVM every first touch of a guest page is an EPT fault,
    which costs ~10 ms when KVM itself runs nested (as on CI VMs), so KVM
    checks the first two pages, one in the middle and the last one."""
    if accel == "tcg" or size <= 0x4000:
        return [(0, size)]
    return [(0, 0x2000), (size // 2, 0x1000), (size - 0x1000, 0x1000)]


@pytest.mark.parametrize("machine", MACHINES)
def test_2mib_pages(boot, long_image, accel, machine):
    img = long_image()
    b, m = img.builder, img.mask
    head = _pattern(3, 4096)
    regions = {0x400000: head,                # in RAM
               0x2000_0000: head[::-1],       # beyond RAM: a new 2 MiB region
               0x600000: b""}                 # a 2 MiB zero page
    for gpa, data in regions.items():
        b.page(gpa, data or None, mask=m, large=True)
        for off, length in spans(0x200000, accel):
            img.task(TaskOp.SUM, gpa + off, length)
    img.task(TaskOp.MEMTEST, 0x2000_0000 + 0x1FF000, 0x1000)   # last 4 KiB is backed
    rep = booted(boot(img.build(), memory="128M", machine=machine))
    sums = {r["gpa"]: r for r in rep.all("sum")}
    # The page's data fills its start; QEMU zero-fills the rest of the 2 MiB
    # (backends/igvm.c qigvm_process_mem_region: data_size < page_size).
    for gpa, data in regions.items():
        full = data + bytes(0x200000 - len(data))
        for off, length in spans(0x200000, accel):
            got = sums[gpa + off]
            want = qword_digest(full[off:off + length])
            assert (got["len"], got["sum"], got["hash"], got["nonzero"]) == (length, *want), \
                hex(gpa + off)
    assert rep.one("memtest")["errors"] == 0


@pytest.mark.parametrize("machine", MACHINES)
def test_required_memory_is_usable(boot, long_image, accel, machine):
    img = long_image()
    in_ram, outside, unbacked = 0x800000, 0x3000_0000, 0x3800_0000
    img.builder.required_memory(in_ram, 0x100000, mask=img.mask)
    img.builder.required_memory(outside, 0x200000, mask=img.mask)
    for base, size in ((in_ram, 0x100000), (outside, 0x200000)):
        for off, length in spans(size, accel):
            img.task(TaskOp.MEMTEST, base + off, length)
    img.task(TaskOp.MEMTEST, unbacked, 0x1000)      # control: nothing there
    rep = booted(boot(img.build(), memory="128M", machine=machine))
    res = {r["gpa"]: r["errors"] for r in rep.all("memtest")}
    assert len(res) == 1 + 2 * len(spans(0x100000, accel))
    for gpa, errors in res.items():
        if gpa == unbacked:
            assert errors > 0       # the memory test can fail where no RAM exists
        else:                       # backends/igvm.c qigvm_directive_required_memory
            assert errors == 0, hex(gpa)


@pytest.mark.parametrize("machine", MACHINES)
def test_unmeasured_pages_are_loaded_natively(boot, long_image, accel, machine):
    img = long_image()
    data = _pattern(11, 3 * 4096)
    img.builder.pages(0x500000, data, mask=img.mask, unmeasured=True)
    img.task(TaskOp.SUM, 0x500000, len(data))
    img.task(TaskOp.PEEK, 0x500000)
    rep = booted(boot(img.build(), machine=machine))
    s = rep.one("sum")
    assert (s["sum"], s["hash"], s["nonzero"]) == qword_digest(data)
    assert rep.one("peek")["value"] == int.from_bytes(data[:8], "little")


@pytest.mark.parametrize("machine", MACHINES)
def test_platform_config_page_selected_by_mask(boot, long_image, accel, machine):
    """A file for NATIVE and SEV-ES carries one configuration page per
    platform at the same GPA; without a confidential-guest object QEMU picks
    the native mask (backends/igvm.c qigvm_supported_platform_compat_mask
    considers SEV platforms only with a cgs object), so the guest must see
    the native page: port I/O and the native exit status."""
    from harness.igvm.defs import PlatformType
    img = long_image(exit_status=0x11)
    img.add_platform(PlatformType.SEV_ES, exit_status=0x22)
    out = boot(img.build(), machine=machine)
    rep = booted(out)
    assert rep.one("boot")["io_mode"] == 0 and rep.one("boot")["cfg"] == 1
    assert out.guest_status == 0x11
