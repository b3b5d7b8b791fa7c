"""A real Linux boot through OVMF-in-IGVM (TCG): Debian's kernel by
``-kernel``, the harness initrd (busybox + /init, fixtures/guests/linux/init),
and the guest's own report checked against ``-smp`` and ``-m``
(harness/guests/linux.py ``mismatches`` derives every expected value: CPUs
exact, the EFI map's RAM exact, MemTotal within the kernel's own share).
"""

from __future__ import annotations

import re

import pexpect
import pytest

from harness.guests.firmware import BOOT_MANAGER, OVMF_LINES
from harness.guests.linux import mismatches
from harness.igvm import model as m
from harness.igvm.parser import parse
from harness.terminal import plain

pytestmark = [pytest.mark.qemu, pytest.mark.platforms("native"), pytest.mark.slow]

#: (-smp, -m in MiB) of the Linux boots: below q35's 2 GiB low-memory split
#: (hw/i386/pc_q35.c), so that all RAM is one e820 entry below 4 GiB.
CASES = [(2, 512), (1, 1024)]
#: The case whose boot of the AmdSev build is also the right-hashes
#: reference of test_kernel_with_wrong_hashes_stops_the_firmware (one boot,
#: two checks: harness.qemu.records).
HASHES_REFERENCE = (1, 1024)


def _case(smp: int, mem: int):
    marks = [pytest.mark.weight(12)]
    if (smp, mem) == HASHES_REFERENCE:
        marks.append(pytest.mark.shares_boot("linux-hashes"))
    return pytest.param(smp, mem, id=f"smp{smp}-{mem}M", marks=marks)

#: The builds that verify -kernel (conftest.py VERIFIES_KERNEL), for the
#: firmware marker.
VERIFYING = ("ovmf-amdsev",)

#: IGVM metadata of edk2 (OvmfPkg/ResetVector/X64/IgvmMetadata.nasm.inc):
#: the memory map at offset 0 of the parameter area (8 entries of 24 bytes),
#: the VP count right after it.
EDK2_MEMORY_MAP_OFFSET = 0
EDK2_VP_COUNT_OFFSET = 8 * 24


@pytest.mark.parametrize("smp,mem", [_case(s, m) for s, m in CASES])
def test_linux_through_igvm_reports_smp_and_memory(fw, linux_guest, linux_boot, smp, mem, note):
    run, rep = linux_boot(igvm=linux_guest.wrap_for(fw, "native", smp), smp=smp, memory=f"{mem}M",
                          label=f"linux {smp} cpu {mem}M")
    assert not mismatches(rep, smp, mem << 20), mismatches(rep, smp, mem << 20)
    note("linux_boot_s", round(run.matched_at, 2))


@pytest.mark.weight(12)
def test_linux_through_bios_reports_smp_and_memory(fw, linux_boot, note):
    if fw.verifies_kernel:
        pytest.skip(f"no /dev/sev: {fw.name} boots -kernel only against kernel hashes, which"
                    " QEMU adds to a -bios launch for SEV guests only")
    smp, mem = CASES[0]
    run, rep = linux_boot(bios=fw.path, smp=smp, memory=f"{mem}M", label="linux -bios")
    assert not mismatches(rep, smp, mem << 20), mismatches(rep, smp, mem << 20)
    note("linux_boot_bios_s", round(run.matched_at, 2))


@pytest.mark.firmware(*VERIFYING)
def test_kernel_without_hashes_is_refused(fw, fw_boot, linux_guest):
    """No hashes table: the AmdSev build's verifier refuses the blob
    (VerifyBlob: EFI_ACCESS_DENIED), BDS gives up and no kernel runs."""
    run = fw_boot(igvm=fw.wrap(), extra=linux_guest.args())
    assert run.matched is not None, run.summary()
    assert re.search(OVMF_LINES["bds-gave-up"][0], run.matched), run.matched
    assert "Linux version" not in run.console
    assert not run.report.first("linux")


#: The wrong table's boot is judged from QEMU's start on: silent, and once
#: it is as old as the right table's boot was at the kernel's first line
#: (the verifier runs before that line: BDS verifies the kernel when it
#: loads it), its vCPU must sit in a loop of a few bytes -- CpuDeadLoop is
#: ``for (Index = 0; Index == 0;) { CpuPause (); }`` (MdePkg/Library/BaseLib/
#: CpuDeadLoop.c) -- in every instruction-pointer sample (HMP ``info
#: registers``) over SPIN_SECONDS.  A busier machine only makes the wait
#: longer (DXE still running moves RIP), up to GIVE_UP_FACTOR times the
#: reference.
RIP_EVERY, SPIN_SECONDS, RIP_SPREAD = 0.25, 1.5, 64
GIVE_UP_FACTOR = 4.0


def _rip(qr) -> int:
    text = qr.command("human-monitor-command", **{"command-line": "info registers"})
    found = re.search(r"RIP=([0-9a-f]+)", text)
    assert found, text
    return int(found.group(1), 16)


def _spinning(samples: list[tuple[float, int]], now: float) -> bool:
    recent = [rip for t, rip in samples if t >= now - SPIN_SECONDS]
    span = now - min((t for t, _ in samples), default=now)
    return span >= SPIN_SECONDS and max(recent) - min(recent) <= RIP_SPREAD


@pytest.mark.firmware(*VERIFYING)
@pytest.mark.shares_boot("linux-hashes")
@pytest.mark.weight(10)
def test_kernel_with_wrong_hashes_stops_the_firmware(fw, linux_boot, linux_guest, qemu_binary,
                                                     new_run_dir, note):
    """A table for another command line: VerifyBlob finds the digest wrong
    and calls CpuDeadLoop (BlobVerifierSevHashes.c), in DXE, before the
    boot manager prints anything.  The reference is the right table's
    boot (the Linux test's record of the same machine: one boot, two
    checks): the wrong one stays silent past the time that one took to the
    kernel's first line, and its vCPU is then found spinning in place."""
    import time

    from harness.qemu.cmdline import QemuCommand
    from harness.qemu.runner import QemuRun
    smp, mem = HASHES_REFERENCE
    good, _ = linux_boot(igvm=linux_guest.wrap_for(fw, "native", smp), smp=smp,
                         memory=f"{mem}M", label=f"linux {smp} cpu {mem}M")
    to_kernel = good.first_at(r"Linux version")
    assert to_kernel is not None, good.summary()
    wrong = linux_guest.hashed_wrap(fw, smp, cmdline=linux_guest.append + " x")
    give_up = max(30.0, GIVE_UP_FACTOR * to_kernel)
    cmd = QemuCommand(qemu_binary, accel="tcg", memory=f"{mem}M", smp=smp, igvm=str(wrong),
                      extra=linux_guest.args())
    samples: list[tuple[float, int]] = []
    with QemuRun(cmd, new_run_dir(), timeout=give_up + 30.0) as qr:
        qr.cont()
        t0 = time.monotonic()
        while True:
            seen = qr.expect([BOOT_MANAGER + r"|Linux version", pexpect.TIMEOUT, pexpect.EOF],
                             timeout=RIP_EVERY)
            console = plain((qr.run_dir / "console.log").read_bytes().decode("utf-8", "replace"))
            assert seen == 1 and not console.strip(), (
                f"the console spoke or QEMU exited: {console[-400:]!r}")
            now = time.monotonic() - t0
            samples.append((now, _rip(qr)))
            if now >= to_kernel and _spinning(samples, now):
                break
            assert now < give_up, (f"no dead loop after {now:.1f} s (reference: kernel at"
                                   f" {to_kernel:.1f} s); RIPs {[hex(r) for _, r in samples[-8:]]}")
    note("dead_loop_after_s", round(now, 1))
    note("reference_kernel_s", round(to_kernel, 1))


def test_wrap_carries_the_igvm_parameters_the_firmware_declares(fw):
    """Where OVMF declares IGVM metadata, the wrap gives QEMU a parameter
    area at its GPA with the memory map and VP count where edk2 reads them
    (so the Linux boots above ran with OVMF taking its memory map from the
    IGVM file: Igvm.c PlatformIgvmMemoryMapFind)."""
    meta = fw.image.igvm_metadata
    f = parse(fw.wrap().read_bytes())
    if meta is None or meta.param_area is None:
        # Older edk2 (bookworm's 2022.11) declares none: the wrap adds none.
        assert not [d for d in f.directives if isinstance(
            d, (m.ParameterArea, m.Parameter, m.ParameterInsert))]
        return
    areas = [d for d in f.directives if isinstance(d, m.ParameterArea)]
    assert len(areas) == 1 and areas[0].number_of_bytes == meta.param_area.size
    index = areas[0].parameter_area_index
    mmap = [d for d in f.directives if isinstance(d, m.MemoryMap)]
    vps = [d for d in f.directives if isinstance(d, m.VpCountParameter)]
    assert [(d.parameter_area_index, d.byte_offset) for d in mmap] == [(index, EDK2_MEMORY_MAP_OFFSET)]
    assert [(d.parameter_area_index, d.byte_offset) for d in vps] == [(index, EDK2_VP_COUNT_OFFSET)]
    inserts = [d for d in f.directives if isinstance(d, m.ParameterInsert)]
    assert [(d.gpa, d.parameter_area_index) for d in inserts] == [(meta.param_area.start, index)]
