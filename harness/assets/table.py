"""What the harness fetches from Debian: one row per installed file.

A row names the binary package, which suites may serve it, the path of the
file inside the package and what the harness uses it for.  Suite choice:

* ``NEWEST``: every suite of the private apt configuration; the newest
  version wins, and among suites serving that version the most stable one
  is recorded (forky before unstable), since it keeps the version longest.
* ``CONFIGURED``: only the release /etc/apt is configured for (bookworm).
* a codename tuple: only those suites (``ovmf-bookworm`` is bookworm's by name).
"""

from __future__ import annotations

from dataclasses import dataclass

NEWEST = ("@newest",)
CONFIGURED = ("@configured",)
MiB = 1 << 20


@dataclass(frozen=True)
class AssetSpec:
    name: str
    package: str            # the package asked for by name
    suites: tuple[str, ...]
    member: str             # path inside the package (one glob allowed in the file name)
    kind: str               # firmware | firmware-code | firmware-vars | kernel | userspace | bootloader
    purpose: str
    max_size: int           # bound on the extracted file (refused beyond it)
    # For a metapackage: the dependency that carries the file (regex on Depends).
    via_depends: str | None = None


ASSETS: tuple[AssetSpec, ...] = (
    AssetSpec("ovmf-amdsev", "ovmf-amdsev", NEWEST, "usr/share/ovmf/OVMF.amdsev.fd", "firmware",
              "OVMF's AMD SEV build (SEV metadata, no SMM, no varstore): the image to wrap "
              "for SEV, SEV-ES and SEV-SNP", 16 * MiB),
    AssetSpec("ovmf-generic", "ovmf-generic", NEWEST, "usr/share/ovmf/OVMF.fd", "firmware",
              "generic OVMF, unified code+vars image (4 MiB layout)", 16 * MiB),
    AssetSpec("ovmf-generic-4m", "ovmf-generic", NEWEST, "usr/share/OVMF/OVMF_CODE_4M.fd",
              "firmware-code", "code-only pflash image of the generic build", 16 * MiB),
    AssetSpec("ovmf-generic-vars-4m", "ovmf-generic", NEWEST, "usr/share/OVMF/OVMF_VARS_4M.fd",
              "firmware-vars", "variable store template for ovmf-generic-4m (pflash unit 1)",
              4 * MiB),
    AssetSpec("ovmf-bookworm", "ovmf", ("bookworm",), "usr/share/ovmf/OVMF.fd", "firmware",
              "bookworm's OVMF 2022.11: 2 MiB image, older layout, no AMD SEV build", 16 * MiB),
    AssetSpec("linux", "linux-image-amd64", CONFIGURED, "boot/vmlinuz-*", "kernel",
              "Debian's kernel for the Linux boots (-kernel, or embedded in the IGVM file)",
              64 * MiB, via_depends=r"linux-image-[0-9][^\s,()]*-amd64"),
    AssetSpec("busybox", "busybox-static", CONFIGURED, "bin/busybox", "userspace",
              "static busybox: the userspace of the initrd the harness builds", 16 * MiB),
    AssetSpec("systemd-boot", "systemd-boot-efi", CONFIGURED,
              "usr/lib/systemd/boot/efi/systemd-bootx64.efi", "bootloader",
              "systemd-boot, the UEFI boot loader of the Linux disk boots (harness/guests/"
              "boot_disk.py: \\EFI\\BOOT\\BOOTX64.EFI reading loader/entries)", 4 * MiB),
)

BY_NAME: dict[str, AssetSpec] = {a.name: a for a in ASSETS}
NAMES: tuple[str, ...] = tuple(BY_NAME)
FIRMWARE_KINDS = ("firmware",)  # bootable by themselves (-bios, or wrapped into IGVM)
