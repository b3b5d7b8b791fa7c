"""OVMF wrapped for SEV, SEV-ES and SEV-SNP.

Without the hardware, QEMU runs each wrap under TCG to the platform's
hardware boundary and stops there with the error the expectation data
predicts (harness/expect/data/platforms.toml, which cites QEMU: SEV and
SEV-ES stop in system/vl.c qemu_machine_creation_done after the IGVM file
was processed; SEV-SNP stops earlier, backends/hostmem.c / system/physmem.c
ram_block_add, because guest_memfd needs KVM).  The test asserts that stop,
then reports "reached hardware boundary" (never a pass).

On an SEV host (``/dev/sev`` and the platform enabled in kvm_amd) the same
wraps run under KVM to the boot manager, and boot Linux by ``-kernel``
with QEMU's kernel hashes (sev-guest ``kernel-hashes=on``: the AmdSev build
verifies the blobs against them).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.guests.linux import mismatches
from harness.qemu.outcome import Status

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

CONFIDENTIAL = ["sev", "sev-es", "sev-snp"]


def _object_missing(table, platform: str, caps) -> str | None:
    return caps.missing(table.platforms[platform].object_type)


@pytest.mark.parametrize("platform", CONFIDENTIAL)
def test_wrap_runs_to_the_boundary_or_the_boot_manager(fw, fw_boot, platform, qemu_caps,
                                                       expect_table, cgs_for, selected):
    selected(platform)
    why = _object_missing(expect_table, platform, qemu_caps)
    if why:
        pytest.skip(why)
    hardware = qemu_caps.has(platform)
    cgs = cgs_for(platform, hardware)
    run = fw_boot(igvm=fw.wrap((platform,)), accel="kvm" if hardware else "tcg",
                  confidential=cgs, timeout=120.0 if hardware else 60.0)
    if hardware:
        assert run.seen, f"{run.summary()}\nconsole tail:\n{run.outcome.tail(8)}"
        return
    boundary = expect_table.platforms[platform].boundary
    out = run.outcome
    stderr = (Path(out.run_dir) / "stderr.log").read_text("utf-8", "replace")
    assert out.status is Status.BOUNDARY, out.summary()
    assert out.exit_code == 1 and re.search(boundary.error, stderr), (boundary.error, stderr)
    assert not run.seen and not out.console.strip()     # no guest instruction ran
    pytest.skip(f"reached hardware boundary: {out.error} ({'; '.join(boundary.source)})")


@pytest.mark.parametrize("platform", CONFIDENTIAL)
def test_linux_on_sev_hardware(fw, linux_boot, platform, qemu_caps, cgs_for, selected):
    selected(platform)
    why = qemu_caps.missing(platform)
    if why:
        pytest.skip(why)
    smp, mem = 2, 512
    cgs = cgs_for(platform, True, **{"kernel-hashes": True})
    run, rep = linux_boot(igvm=fw.wrap((platform,), smp), accel="kvm", smp=smp,
                          memory=f"{mem}M", confidential=cgs)
    assert not mismatches(rep, smp, mem << 20), mismatches(rep, smp, mem << 20)
