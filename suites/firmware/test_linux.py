"""A real Linux boot through OVMF-in-IGVM (TCG): Debian's kernel by
``-kernel``, the harness initrd (busybox + /init, fixtures/guests/linux/init),
and the guest's own report checked against ``-smp`` and ``-m``
(harness/guests/linux.py ``mismatches`` derives every expected value: CPUs
exact, the EFI map's RAM exact, MemTotal within the kernel's own share).
"""

from __future__ import annotations

import re

import pytest

from harness.guests.firmware import BOOT_MANAGER, OVMF_LINES
from harness.guests.linux import mismatches
from harness.igvm import model as m
from harness.igvm.parser import parse
from harness.qemu.outcome import Status
from harness.terminal import plain

pytestmark = [pytest.mark.qemu, pytest.mark.platforms("native"), pytest.mark.slow]

#: (-smp, -m in MiB) of the Linux boots: below q35's 2 GiB low-memory split
#: (hw/i386/pc_q35.c), so that all RAM is one e820 entry below 4 GiB.
CASES = [(2, 512), (1, 1024)]

#: The builds that verify -kernel (conftest.py VERIFIES_KERNEL), for the
#: firmware marker.
VERIFYING = ("ovmf-amdsev",)
#: Deadline to the kernel's first console line under TCG (about 5 s idle).
TO_KERNEL_TIMEOUT = 240.0

#: IGVM metadata of edk2 (OvmfPkg/ResetVector/X64/IgvmMetadata.nasm.inc):
#: the memory map at offset 0 of the parameter area (8 entries of 24 bytes),
#: the VP count right after it.
EDK2_MEMORY_MAP_OFFSET = 0
EDK2_VP_COUNT_OFFSET = 8 * 24


@pytest.mark.parametrize("smp,mem", CASES, ids=[f"smp{s}-{m}M" for s, m in CASES])
def test_linux_through_igvm_reports_smp_and_memory(fw, linux_guest, linux_boot, smp, mem, note):
    run, rep = linux_boot(igvm=linux_guest.wrap_for(fw, "native", smp), smp=smp, memory=f"{mem}M",
                          label=f"linux {smp} cpu {mem}M")
    assert not mismatches(rep, smp, mem << 20), mismatches(rep, smp, mem << 20)
    note("linux_boot_s", round(run.matched_at, 2))


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


@pytest.mark.firmware(*VERIFYING)
def test_kernel_with_wrong_hashes_stops_the_firmware(fw, fw_boot, linux_guest):
    """A table for another command line: VerifyBlob finds the digest wrong
    and calls CpuDeadLoop (BlobVerifierSevHashes.c), in DXE, before the
    boot manager prints anything.  Measured against the right table's
    boot on the same machine: silence for three times as long."""
    good = fw_boot(igvm=linux_guest.hashed_wrap(fw), marker=r"Linux version", stop=True,
                   extra=linux_guest.args(), timeout=TO_KERNEL_TIMEOUT, label="right hashes")
    assert good.matched is not None, good.summary()
    wrong = linux_guest.hashed_wrap(fw, cmdline=linux_guest.append + " x")
    run = fw_boot(igvm=wrong, marker=BOOT_MANAGER + r"|Linux version",
                  extra=linux_guest.args(), timeout=max(30.0, 3 * good.matched_at),
                  label="wrong hashes")
    assert run.matched is None, run.summary()
    assert run.status is Status.HUNG and not plain(run.console).strip()


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
