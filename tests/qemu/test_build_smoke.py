"""Smallest possible check that the harness's own QEMU build runs IGVM.

(The suite's smoke test lives with the runner; this one only proves the
build is usable: no firmware, ``-nodefaults``, both machines, TCG and KVM.)
The guest is 13 bytes of real-mode code at the reset vector: it writes 'X'
to COM1 (port 0x3f8) and 0x10 to isa-debug-exit (port 0xf4), which
hw/misc/debugexit.c turns into exit status (0x10 << 1) | 1 = 33.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from harness.qemu import build

BUILT = build.current_binary()
KVM_OK = os.access("/dev/kvm", os.R_OK | os.W_OK)

# mov dx,0x3f8; mov al,'X'; out dx,al; mov dx,0xf4; mov al,0x10; out dx,al; hlt
RESET_CODE = bytes([0xBA, 0xF8, 0x03, 0xB0, 0x58, 0xEE,
                    0xBA, 0xF4, 0x00, 0xB0, 0x10, 0xEE, 0xF4])


def _igvm(path):
    from harness.igvm.builder import IgvmBuilder
    from harness.igvm.defs import PlatformType

    page = bytearray(4096)
    page[0xFF0:0xFF0 + len(RESET_CODE)] = RESET_CODE  # 0xFFFFFFF0, the reset vector
    b = IgvmBuilder()
    mask = b.platform(PlatformType.NATIVE)
    b.page(0xFFFFF000, bytes(page), mask=mask)
    path.write_bytes(b.build())


@pytest.mark.skipif(BUILT is None, reason=f"no QEMU-under-test built in {build.cache_root()} "
                                          "(run `igvm-harness qemu build`)")
@pytest.mark.parametrize("machine", ["q35", "pc"])
@pytest.mark.parametrize("accel", ["tcg", "kvm"])
def test_built_qemu_boots_igvm_without_firmware(tmp_path, machine, accel):
    if accel == "kvm" and not KVM_OK:
        pytest.skip("no usable /dev/kvm")
    f = tmp_path / "reset.igvm"
    _igvm(f)
    res = subprocess.run(
        [str(BUILT), "-machine", f"{machine},igvm-cfg=ig", "-object", f"igvm-cfg,id=ig,file={f}",
         "-accel", accel, "-nodefaults", "-display", "none", "-serial", "stdio",
         "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert res.returncode == 33, res.stderr.decode(errors="replace")
    assert res.stdout == b"X"
