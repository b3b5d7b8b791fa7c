"""Debian's OVMF builds, wrapped into IGVM, reach their boot manager, and the
same firmware given classically (``-bios``) shows the same boot manager:
the IGVM path loses nothing the firmware needs.

"Reached" is the firmware's own console output (harness/guests/firmware.py
cites the edk2 lines): the run waits until BDS gave up or the shell prompt
appeared, then compares every BdsDxe / shell line of the two runs.
"""

from __future__ import annotations

import re

import pytest

from harness.guests.firmware import OVMF_LINES

pytestmark = [pytest.mark.qemu, pytest.mark.platforms("native"), pytest.mark.slow]


@pytest.mark.shares_boot("boot-manager")
@pytest.mark.weight(3)
def test_igvm_wrap_reaches_boot_manager(fw, fw_boot, fw_accel, note, settled):
    run = fw_boot(igvm=fw.wrap(), accel=fw_accel)
    lines = settled(run)
    # BDS tried at least one boot option or said it had none (the AmdSev
    # build restricts boot to its own firmware volume).
    assert any(re.search(OVMF_LINES[k][0], l) for l in lines
               for k in ("bds-option", "bds-gave-up")), lines
    note("boot_manager_s", round(run.matched_at, 2))


@pytest.mark.shares_boot("boot-manager")
@pytest.mark.weight(3)
def test_bios_shows_the_same_boot_manager(fw, fw_boot, fw_accel, note, settled):
    # the wrap's boot is the record the test above made (one boot, two checks)
    via_igvm = settled(fw_boot(igvm=fw.wrap(), accel=fw_accel, label="igvm"))
    bios_run = fw_boot(bios=fw.path, accel=fw_accel, label="-bios")
    via_bios = settled(bios_run)
    assert via_igvm == via_bios
    note("boot_manager_bios_s", round(bios_run.matched_at, 2))
