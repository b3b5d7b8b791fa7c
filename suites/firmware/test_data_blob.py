"""Stretch of issue 10: Debian's kernel embedded in the IGVM file as an
edk2 IGVM data blob (type 0x201, harness/igvm/ovmf_blobs.py) -- measured
with the firmware -- and booted without ``-kernel``.

With an IGVM kernel blob OVMF ignores fw_cfg (QemuKernelLoaderFsDxe.c
QemuKernelRegisterIgvmBlobs), so the kernel runs with no initrd and no
command line: no console on COM1, and it ends in the panic of a kernel
without a root file system (init/do_mounts.c mount_block_root: "VFS: Unable
to mount root fs on unknown-block(0,0)").  That text is formatted at run
time (the device name comes from a %s), so finding it in guest RAM -- read
through QMP ``pmemsave`` -- shows that the kernel from the blob ran to its
mount of the root file system.  The same wrap without the blob stays in the
boot manager.
"""

from __future__ import annotations

import time

import pytest

from harness.igvm.ovmf_blobs import DataType, add_blobs

pytestmark = [pytest.mark.qemu, pytest.mark.platforms("native"), pytest.mark.slow]

MEMORY = 256 << 20
KERNEL_GPA = 0x2000000          # 32 MiB: RAM OVMF leaves alone (PEI/DXE allocate top-down)
PANIC = b"VFS: Unable to mount root fs on unknown-block(0,0)"
DEADLINE = 400.0
#: Seconds between two looks into guest RAM (a 256 MiB ``pmemsave`` and a
#: search: ~0.3 s of work each); the kernel gets there in 5-20 s under TCG.
POLL = 2.0


@pytest.mark.weight(10)
def test_kernel_from_igvm_data_blob_runs_without_kernel_option(fw, linux_guest, qemu_binary,
                                                               new_run_dir, tmp_path,
                                                               note):
    from harness.qemu.cmdline import QemuCommand
    from harness.qemu.runner import QemuRun

    from harness.errors import HarnessError
    kernel = [(DataType.KERNEL, linux_guest.kernel.path.read_bytes())]
    meta = fw.image.igvm_metadata
    if meta is None or meta.hob_area is None:
        # Older edk2 (bookworm's 2022.11) has no HOB area: one error line.
        with pytest.raises(HarnessError, match="no IGVM HOB area"):
            add_blobs(fw.wrap().read_bytes(), fw.image, kernel, KERNEL_GPA)
        return
    image = tmp_path / "kernel-blob.igvm"
    image.write_bytes(add_blobs(fw.wrap().read_bytes(), fw.image, kernel, KERNEL_GPA))
    ram = tmp_path / "ram.bin"
    cmd = QemuCommand(qemu_binary, accel="tcg", memory=f"{MEMORY >> 20}M", igvm=str(image))
    try:
        with QemuRun(cmd, new_run_dir(), timeout=DEADLINE) as qr:
            qr.cont()
            t0, found = time.monotonic(), -1
            while found < 0 and time.monotonic() - t0 < DEADLINE:
                time.sleep(POLL)
                assert qr.proc.poll() is None, "QEMU exited"
                qr.command("pmemsave", val=0, size=MEMORY, filename=str(ram))
                found = ram.read_bytes().find(PANIC)
            elapsed = time.monotonic() - t0
    finally:
        ram.unlink(missing_ok=True)      # 256 MiB: not kept in tmp_path
    assert found >= 0, f"no '{PANIC.decode()}' in guest RAM after {DEADLINE:g} s"
    assert "-kernel" not in cmd.argv()
    console = (qr.run_dir / "console.log").read_bytes()
    assert b"No bootable option" not in console     # BDS did not give up: the blob booted
    note("kernel_blob_panic_s", round(elapsed, 1))
