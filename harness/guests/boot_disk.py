"""A boot disk for the Linux guest: the way a real OS boots, firmware to boot
loader to kernel, without ``-kernel`` or fw_cfg.

The disk is one FAT volume (harness/guests/fat.py) holding Debian's
systemd-boot as the removable-media boot file ``\\EFI\\BOOT\\BOOTX64.EFI``
(UEFI 2.10, 3.5.1.1), one Boot Loader Specification entry (systemd
``docs/BOOT_LOADER_SPECIFICATION``: ``loader/entries/*.conf`` with
``linux``, ``initrd``, ``options``), Debian's kernel and the harness initrd.
``loader/loader.conf`` says ``timeout 0``: boot the default entry without a
menu (systemd-boot's loader.conf(5)).  The kernel is told ``igvmt.via=disk``
on its command line, so a test sees in the kernel's own "Kernel command
line:" line (init/main.c start_kernel) that the options came from the disk.

Cached like the initrd: the key hashes every input and the recipe, and the
image is published with an atomic rename.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from harness.errors import HarnessError
from harness.guests import fat
from harness.guests.build import cache_root, publish

#: Bumped when the disk's layout or configuration changes meaning.
RECIPE_VERSION = 1
ENTRY = "igvmt.conf"
VIA = "igvmt.via=disk"
#: What a kernel, initrd and boot loader may take here; larger inputs are
#: refused before they are read (the disk is built in memory).
MAX_INPUT = 64 << 20


def loader_conf() -> bytes:
    return f"timeout 0\ndefault {ENTRY}\n".encode()


def entry_conf(options: str) -> bytes:
    if "\n" in options:
        raise HarnessError("boot disk: kernel options must be one line")
    return ("title igvm-harness Linux guest\nlinux /vmlinuz\ninitrd /initrd.img\n"
            f"options {options} {VIA}\n").encode()


def _read(path: Path, what: str) -> bytes:
    from harness.inputs import read_input
    return read_input(path, MAX_INPUT, lambda size: f"{what} of {size} bytes "
                                                    f"(limit {MAX_INPUT >> 20} MiB)")


def files(loader: bytes, kernel: bytes, initrd: bytes, options: str) -> dict[str, bytes]:
    """The volume's files (FAT path -> contents)."""
    if loader[:2] != b"MZ":
        raise HarnessError("boot disk: the boot loader is not a PE/COFF (UEFI) image")
    return {
        "EFI/BOOT/BOOTX64.EFI": loader,
        "loader/loader.conf": loader_conf(),
        f"loader/entries/{ENTRY}": entry_conf(options),
        "vmlinuz": kernel,
        "initrd.img": initrd,
    }


def build_boot_disk(loader: Path, kernel: Path, initrd: Path, options: str,
                    cache: Path | None = None) -> Path:
    """Build (or reuse) the disk image; returns the cached file (copy it
    before giving it to a guest that may write)."""
    parts = [_read(Path(loader), "boot loader"), _read(Path(kernel), "kernel"),
             _read(Path(initrd), "initrd")]
    h = hashlib.sha256(f"boot disk recipe={RECIPE_VERSION} options={options}\n".encode())
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    cache = cache or cache_root()
    final = cache / f"bootdisk-{h.hexdigest()[:20]}.img"
    if final.is_file():
        return final
    image = fat.build(files(*parts, options), label="IGVMT-BOOT")
    return publish(final, image, ".bootdisk-", what="the boot disk")
