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


#: How long the wrong table's boot must stay silent, against the seconds
#: the right table's boot took to the kernel's first line: the verifier runs
#: before that line (the kernel is verified when BDS loads it), so twice
#: that time is well past it, with room for a busier machine.
SILENCE_FACTOR = 2.0
#: vCPU instruction pointer samples (HMP ``info registers``) taken at the
#: end of the silence, and how close they must lie: CpuDeadLoop is
#: ``for (Index = 0; Index == 0;) { CpuPause (); }`` (MdePkg/Library/
#: BaseLib/CpuDeadLoop.c), a loop of a few bytes.
RIP_SAMPLES, RIP_SPREAD = 5, 64


def _rip(qr) -> int:
    text = qr.command("human-monitor-command", **{"command-line": "info registers"})
    found = re.search(r"RIP=([0-9a-f]+)", text)
    assert found, text
    return int(found.group(1), 16)


@pytest.mark.firmware(*VERIFYING)
@pytest.mark.shares_boot("linux-hashes")
@pytest.mark.weight(14)
def test_kernel_with_wrong_hashes_stops_the_firmware(fw, linux_boot, linux_guest, qemu_binary,
                                                     new_run_dir):
    """A table for another command line: VerifyBlob finds the digest wrong
    and calls CpuDeadLoop (BlobVerifierSevHashes.c), in DXE, before the
    boot manager prints anything.  The reference is the right table's
    boot (the Linux test's record of the same machine: one boot, two
    checks): the wrong one stays silent for twice the time that one took to
    the kernel's first line, and its vCPU then spins in a few bytes."""
    import time

    from harness.qemu.cmdline import QemuCommand
    from harness.qemu.runner import QemuRun
    smp, mem = HASHES_REFERENCE
    good, _ = linux_boot(igvm=linux_guest.wrap_for(fw, "native", smp), smp=smp,
                         memory=f"{mem}M", label=f"linux {smp} cpu {mem}M")
    to_kernel = good.first_at(r"Linux version")
    assert to_kernel is not None, good.summary()
    wrong = linux_guest.hashed_wrap(fw, smp, cmdline=linux_guest.append + " x")
    silence = max(10.0, SILENCE_FACTOR * to_kernel)
    cmd = QemuCommand(qemu_binary, accel="tcg", memory=f"{mem}M", smp=smp, igvm=str(wrong),
                      extra=linux_guest.args())
    with QemuRun(cmd, new_run_dir(), timeout=silence + 30.0) as qr:
        qr.cont()
        seen = qr.expect([BOOT_MANAGER + r"|Linux version", pexpect.TIMEOUT, pexpect.EOF],
                         timeout=silence)
        console = (qr.run_dir / "console.log").read_bytes().decode("utf-8", "replace")
        assert seen == 1, f"the console spoke or QEMU exited: {plain(console)[-400:]!r}"
        rips = []
        for _ in range(RIP_SAMPLES):
            rips.append(_rip(qr))
            time.sleep(0.2)
    assert not plain((qr.run_dir / "console.log").read_text("utf-8", "replace")).strip()
    assert max(rips) - min(rips) <= RIP_SPREAD, [hex(r) for r in rips]


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
