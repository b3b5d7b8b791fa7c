"""The lean QEMU-under-test (harness/qemu/devices.py) runs everything the harness starts.

The binary: ``$IGVM_HARNESS_LEAN_QEMU``, else the newest build in the
harness cache made with :data:`harness.qemu.build.LEAN_OPTIONS`
(``igvm-harness qemu build --lean``).  Combinations, from what the harness
passes to QEMU:

* machines q35 and pc (harness/qemu/cmdline.py default, suites/native, probe),
  TCG and KVM, with the devices of every harness boot: COM1 as ``isa-serial``
  on a socket chardev, ``isa-debug-exit`` at 0x501, ``pvpanic`` (certify),
  ``-device loader`` (runner tests), QMP;
* ``sev-guest`` / ``sev-snp-guest`` with an IGVM file under TCG: QEMU gets as
  far as the accelerator check (system/vl.c: "accelerator does not support
  confidential guest"), the harness's BOUNDARY;
* real firmware (Debian's OVMF from ``igvm-harness firmware fetch``) booting
  Debian's Linux on q35 under TCG, through ``-bios`` and through pflash
  (the matrix recipes' two firmware forms), and OVMF.amdsev with a
  ``sev-guest`` up to the same boundary (pc_sysfw_ovmf.c reads its SEV
  metadata first).  KVM is left out for firmware: this host's KVM cannot run
  OVMF (emulation failure in OVMF's SEC code).

Linux is booted without a root file system, so its last words are known in
advance: init/do_mounts.c panics with "VFS: Unable to mount root fs", after
the whole of its ACPI/PCI/serial start-up; ``panic=-1`` reboots at once and
``-no-reboot`` turns that into QEMU's exit.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from harness.qemu import build
from harness.qemu.cmdline import ConfidentialGuest, QemuCommand
from harness.qemu.runner import run

LEAN = os.environ.get("IGVM_HARNESS_LEAN_QEMU") or build.find_built(build.LEAN_OPTIONS)
KVM_OK = os.access("/dev/kvm", os.R_OK | os.W_OK)
LINUX_TIMEOUT = 900.0  # TCG, on a loaded 2-core machine

pytestmark = pytest.mark.skipif(
    not LEAN, reason=f"no lean QEMU-under-test in {build.cache_root()} "
                     "(run `igvm-harness qemu build --lean` or set IGVM_HARNESS_LEAN_QEMU)")

LOADER_GPA = 0x9000
# Real mode at the reset vector (CS base 0xFFFF0000, DS base 0): print the byte
# -device loader put at 0x9000 to COM1, then write 0x10 to isa-debug-exit at
# 0x501 (QEMU exits with (0x10 << 1) | 1 = 33, hw/misc/debugexit.c).
#   mov al,[0x9000]; mov dx,0x3f8; out dx,al; mov dx,0x501; mov al,0x10; out dx,al; hlt
RESET_CODE = bytes([0xA0, 0x00, 0x90, 0xBA, 0xF8, 0x03, 0xEE,
                    0xBA, 0x01, 0x05, 0xB0, 0x10, 0xEE, 0xF4])


def _native_igvm(path) -> str:
    from harness.igvm.builder import IgvmBuilder
    from harness.igvm.defs import PlatformType

    page = bytearray(4096)
    page[0xFF0:0xFF0 + len(RESET_CODE)] = RESET_CODE
    b = IgvmBuilder()
    mask = b.platform(PlatformType.NATIVE)
    b.page(0xFFFFF000, bytes(page), mask=mask)
    path.write_bytes(b.build())
    return str(path)


def _sev_igvm(path, platform) -> str:
    from harness.igvm.builder import IgvmBuilder

    b = IgvmBuilder()
    mask = b.platform(platform)
    b.page(0xFFFFF000, bytes(4096), mask=mask)
    path.write_bytes(b.build())
    return str(path)


def _help(*args: str) -> str:
    res = subprocess.run([str(LEAN), *args], capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    return res.stdout + res.stderr


def test_lean_binary_has_what_the_harness_uses_and_not_the_rest():
    machines = _help("-machine", "help")
    assert "q35" in machines and "\npc " in machines
    devs = _help("-device", "help")
    for name in ("isa-debug-exit", "pvpanic", "loader", "isa-serial", "ich9-ahci"):
        assert f'name "{name}"' in devs, name
    for name in ("e1000", "virtio-net-pci", "usb-ehci", "VGA", "nvme"):  # QEMU defaults
        assert f'name "{name}"' not in devs, f"{name}: not a lean build"
    objs = _help("-object", "help")
    for name in ("igvm-cfg", "sev-guest", "sev-snp-guest"):
        assert name in objs.split(), name


@pytest.mark.parametrize("machine", ["q35", "pc"])
@pytest.mark.parametrize("accel", ["tcg", "kvm"])
def test_igvm_guest_with_every_harness_device(tmp_path, machine, accel):
    if accel == "kvm" and not KVM_OK:
        pytest.skip("no usable /dev/kvm")
    blob = tmp_path / "loaded.bin"
    blob.write_bytes(b"L")
    cmd = QemuCommand(str(LEAN), machine=machine, accel=accel,
                      igvm=_native_igvm(tmp_path / "reset.igvm"), pvpanic=True,
                      extra=["-device", f"loader,file={blob},addr=0x{LOADER_GPA:x},force-raw=on"])
    out = run(cmd, tmp_path / "run", timeout=120)
    assert out.exit_code == 33, out.summary() + "\n" + out.error if out.error else out.summary()
    assert out.console == "L"


@pytest.mark.parametrize("platform", ["SEV", "SEV_SNP"])
def test_confidential_guest_objects_reach_the_accelerator_boundary(tmp_path, platform):
    from harness.igvm.defs import PlatformType

    kind = "sev-guest" if platform == "SEV" else "sev-snp-guest"
    cmd = QemuCommand(str(LEAN), accel="tcg", igvm=_sev_igvm(tmp_path / "c.igvm",
                                                            PlatformType[platform]),
                      confidential=ConfidentialGuest(kind, cbitpos=51, reduced_phys_bits=1),
                      paused=False, qmp_path=None)
    res = subprocess.run(cmd.argv(), capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)
    assert res.returncode != 0
    # SEV: system/vl.c (the accelerator check); SNP stops earlier, in
    # target/i386/sev.c / system/physmem.c, because private guest memory needs KVM
    assert ("does not support confidential guest" in res.stderr
            or "KVM required" in res.stderr), res.stderr[-500:]
    assert "not found" not in res.stderr and "is not a valid" not in res.stderr, res.stderr


def _asset(name):
    from harness import assets

    try:
        return assets.path(name)
    except assets.AssetMissing as exc:
        pytest.skip(str(exc))


def _linux_cmd(tmp_path, **kw) -> QemuCommand:
    kernel = _asset("linux")
    return QemuCommand(str(LEAN), machine="q35", accel="tcg", memory="512M",
                       extra=["-kernel", str(kernel),
                              "-append", "console=ttyS0 panic=-1 loglevel=6"], **kw)


def _assert_linux_ran(out) -> None:
    assert "Linux version" in out.console, out.summary() + "\n" + out.tail(30)
    assert "Unable to mount root fs" in out.console, out.summary() + "\n" + out.tail(30)


def test_ovmf_bios_boots_linux_on_q35(tmp_path):
    cmd = _linux_cmd(tmp_path, bios=str(_asset("ovmf-generic")))
    _assert_linux_ran(run(cmd, tmp_path / "run", timeout=LINUX_TIMEOUT))


def test_ovmf_pflash_boots_linux_on_q35(tmp_path):
    code = _asset("ovmf-generic-4m")
    vars_copy = tmp_path / "OVMF_VARS_4M.fd"
    shutil.copyfile(_asset("ovmf-generic-vars-4m"), vars_copy)
    cmd = _linux_cmd(tmp_path)
    cmd.extra += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
                  "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]
    _assert_linux_ran(run(cmd, tmp_path / "run", timeout=LINUX_TIMEOUT))


def test_ovmf_amdsev_with_sev_guest_reaches_the_boundary(tmp_path):
    fw = _asset("ovmf-amdsev")
    cmd = QemuCommand(str(LEAN), accel="tcg", bios=str(fw),
                      confidential=ConfidentialGuest("sev-guest", cbitpos=51, reduced_phys_bits=1),
                      paused=False)
    res = subprocess.run(cmd.argv(), capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)
    assert res.returncode != 0
    assert "does not support confidential guest" in res.stderr, res.stderr[-500:]
