"""Linux booted the way a real OS boots, from IGVM-wrapped OVMF: the firmware
finds a disk, runs the boot loader on it, and the boot loader starts the
kernel -- no ``-kernel``, no fw_cfg.

The disk (harness/guests/boot_disk.py) is a FAT volume with Debian's
systemd-boot as ``\\EFI\\BOOT\\BOOTX64.EFI``, one loader entry, Debian's kernel
and the harness initrd, on q35's built-in AHCI controller (hw/i386/pc_q35.c
creates ich9-ahci; ``ide.0`` is its first port).  Proof of the path, each
from the component that did the step:

* the kernel's "Kernel command line:" (init/main.c start_kernel) carries
  ``igvmt.via=disk``, which only the loader entry on the disk says (no
  ``-kernel``/``-append`` is given), and the ``initrd=`` systemd-boot adds for
  the entry's ``initrd`` line;
* the guest's report (fixtures/guests/linux/init) matches ``-smp`` and
  ``-m`` exactly as in test_linux.py (harness/guests/linux.py mismatches).

The classic ``-bios`` boot of the same firmware and disk must report the same.
Every OVMF build runs, the AmdSev one included: Debian's AmdSev build carries
no GRUB in its firmware volume, so its "Grub Bootloader" option fails and it
goes on to the disk -- a kernel that no SEV measurement covers (the measured
path is direct boot against the kernel hashes, test_linux.py).  TCG only, as
the rest of this suite on a host whose KVM cannot run OVMF.
"""

from __future__ import annotations

import re

import pytest

from harness.guests.firmware import LINUX_DONE, LINUX_PANIC
from harness.guests.linux import mismatches
from harness.qemu.outcome import Status

pytestmark = [pytest.mark.qemu, pytest.mark.platforms("native"), pytest.mark.slow]

SMP, MEM = 2, 512
#: Deadline of a disk boot under TCG (about 12 s idle).
DISK_TIMEOUT = 360.0


def _disk_boot(fw_boot, disk, **kw):
    from harness.qemu.cmdline import BootDisk
    # snapshot=on: the guest's writes go to QEMU's overlay, the cached image stays as built
    return fw_boot(marker=LINUX_DONE, stop=False, fail=LINUX_PANIC, smp=SMP, memory=f"{MEM}M",
                   timeout=DISK_TIMEOUT, extra=BootDisk(str(disk)).args(), **kw)


def _checked(run, linux_guest):
    from harness.guests import linux
    assert run.matched is not None, f"{run.summary()}\nconsole tail:\n{run.tail(15)}"
    assert run.status is Status.BOOTED and run.exit_code == 0, run.summary()
    cmdline = re.search(r"Kernel command line: ([^\r\n]*)", run.console)
    assert cmdline, "no 'Kernel command line:' on the console"
    words = cmdline.group(1).split()
    assert "igvmt.via=disk" in words and r"initrd=\initrd.img" in words, words
    rep = linux.parse(run.report)
    assert rep.kernel in linux_guest.kernel.file
    assert not mismatches(rep, SMP, MEM << 20), mismatches(rep, SMP, MEM << 20)
    return rep


@pytest.mark.shares_boot("disk")
@pytest.mark.weight(12)
def test_linux_from_disk_through_igvm(fw, linux_guest, boot_disk, fw_boot, note):
    loader, disk = boot_disk
    note("asset", loader.describe())
    run = _disk_boot(fw_boot, disk, igvm=fw.wrap(("native",), SMP), label="disk igvm")
    _checked(run, linux_guest)
    note("disk_boot_s", round(run.matched_at, 2))


@pytest.mark.shares_boot("disk")
@pytest.mark.weight(12)
def test_linux_from_disk_through_bios_reports_the_same(fw, linux_guest, boot_disk, fw_boot,
                                                       note):
    loader, disk = boot_disk
    note("asset", loader.describe())
    # the wrap's boot is the record the test above made (one boot, two checks)
    via_igvm = _checked(_disk_boot(fw_boot, disk, igvm=fw.wrap(("native",), SMP),
                                   label="disk igvm"), linux_guest)
    via_bios = _checked(_disk_boot(fw_boot, disk, bios=fw.path, label="disk -bios"),
                        linux_guest)
    assert (via_igvm.online, via_igvm.cpuinfo, via_igvm.ram_bytes) == \
           (via_bios.online, via_bios.cpuinfo, via_bios.ram_bytes)


@pytest.mark.firmware("ovmf-generic")
@pytest.mark.weight(12)
def test_certify_boots_a_vendor_disk(fw, boot_disk, tmp_path, qemu_binary):
    """``certify --disk``: a vendor's firmware IGVM with its OS disk, booted to
    the OS's own line; the disk is left as it was and QEMU's snapshot overlay
    lived only in the run directory (runner.qemu_env: TMPDIR)."""
    import hashlib
    import json
    import subprocess
    import sys
    _, disk = boot_disk
    before = hashlib.sha256(disk.read_bytes()).hexdigest()
    out = tmp_path / "reports"
    r = subprocess.run([sys.executable, "-m", "harness.cli", "certify", str(fw.wrap()),
                        "--platform", "native", "--accel", "tcg", "--qemu", qemu_binary,
                        "--disk", str(disk), "--expect-console", LINUX_DONE,
                        "--boot-timeout", str(DISK_TIMEOUT), "--output", str(out)],
                       capture_output=True, text=True, timeout=DISK_TIMEOUT + 120)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(next(out.glob("certify-*.json")).read_text())
    boot = next(c for c in report["checks"] if c["id"] == "native.boot")
    assert boot["verdict"] == "pass", boot["message"]
    details = boot["evidence"]["details"]
    assert details["disk"]["path"] == str(disk.resolve()) and details["disk"]["format"] == "raw"
    assert hashlib.sha256(disk.read_bytes()).hexdigest() == before
    assert not list(out.rglob("vl.*"))           # the overlay is unlinked once opened
