"""Smoke test of the QEMU under test (issue 3, point 5).

A minimal native IGVM file -- one page covering the reset vector, whose code
writes a marker to COM1 and leaves through isa-debug-exit -- boots under TCG
and KVM; a file whose header checksum is wrong is refused the way QEMU's
backends/igvm.c ``qigvm_file_init`` reports it ("Unable to parse IGVM
file"), which ends QEMU with exit status 1 through &error_fatal
(hw/i386/pc_q35.c / pc_piix.c call ->process with it).
"""

from __future__ import annotations

import struct

import pytest

from harness.qemu.outcome import Status

pytestmark = [pytest.mark.platforms("native"), pytest.mark.qemu]

# IGVM_FIXED_HEADER (igvm_defs): magic, format_version, variable_header_offset,
# variable_header_size, total_file_size, checksum -- checksum at byte 20.
CHECKSUM_OFFSET = 20


@pytest.mark.parametrize("machine", ["q35", "pc"])
def test_reset_vector_guest_boots(boot, reset_image, accel, machine):
    out = boot(reset_image(), machine=machine)
    assert out.status is Status.BOOTED, out.summary()
    rec = out.report.one("boot")
    # Intel SDM vol. 3, table 9-1: after RESET CS.selector = F000H and
    # CR0 = 60000010H; no firmware ran before our page.
    assert rec["mode"] == 16
    assert rec["cs"] == 0xF000
    assert rec["cr0"] == 0x60000010
    assert out.report.done
    assert out.exit_code == 1      # isa-debug-exit: (0 << 1) | 1
    assert out.guest_status == 0


def test_bad_checksum_is_refused(boot, reset_image, accel):
    data = bytearray(reset_image())
    (good,) = struct.unpack_from("<I", data, CHECKSUM_OFFSET)
    struct.pack_into("<I", data, CHECKSUM_OFFSET, good ^ 0x1)
    out = boot(bytes(data))
    assert out.status is Status.ABORTED, out.summary()
    assert out.exit_code == 1
    assert "Unable to parse IGVM file" in out.error
    assert not out.report
