"""The FAT16 volume writer (harness/guests/fat.py) and the boot disk on it.

Independent readers check the image: dosfstools' ``fsck.fat`` (set-up
installs it) finds no error, and mtools (set-up installs it) lists the long
names and reads every file back byte for byte.  The boot sector is read
here from the offsets of Microsoft's fatgen103.  The real proof is the disk
boot of suites/firmware/test_disk_boot.py (OVMF's FAT driver, systemd-boot,
the kernel's EFI stub all reading this volume).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess

import pytest

from harness.errors import HarnessError
from harness.guests import boot_disk, fat

FILES = {
    "EFI/BOOT/BOOTX64.EFI": b"MZ" + os.urandom(5000),
    "loader/loader.conf": b"timeout 0\n",
    "loader/entries/igvmt.conf": b"title x\n",
    "A Very Long File Name, With Spaces.txt": b"long\n",
    "vmlinuz": os.urandom(3 * fat.CLUSTER + 7),
    "EMPTY": b"",
}
MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("fat") / "vol.img"
    path.write_bytes(fat.build(FILES))
    return path


def test_boot_sector_fields(image):
    bs = image.read_bytes()[:512]
    (bytes_per_sector, spc, reserved, nfats, root_entries, tot16, media, fat_size, _, _, hidden,
     tot32) = struct.unpack_from("<HBHBHHBHHHII", bs, 11)
    assert (bytes_per_sector, spc, reserved, nfats, root_entries, media) == (512, 4, 1, 2, 512, 0xF8)
    total = tot16 or tot32
    assert total * 512 == image.stat().st_size and hidden == 0
    clusters = (total - reserved - root_entries * 32 // 512 - nfats * fat_size) // spc
    assert 4085 <= clusters <= 65524                      # FAT16 by cluster count alone
    assert bs[54:62] == b"FAT16   " and bs[38] == 0x29 and bs[510:512] == b"\x55\xaa"


@pytest.mark.skipif(not shutil.which("fsck.fat"), reason="dosfstools not installed (setup.sh installs it)")
def test_fsck_finds_nothing_to_repair(image):
    r = subprocess.run(["fsck.fat", "-n", "-V", str(image)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(not shutil.which("mcopy"), reason="mtools not installed (setup.sh installs it)")
def test_mtools_reads_every_file_back(image, tmp_path):
    for name, data in FILES.items():
        out = tmp_path / "out"
        r = subprocess.run(["mcopy", "-n", "-i", str(image), f"::/{name}", str(out)],
                           capture_output=True, text=True, env=MTOOLS_ENV)
        assert r.returncode == 0, (name, r.stderr)
        assert out.read_bytes() == data, name
        out.unlink()
    listing = subprocess.run(["mdir", "-/", "-i", str(image), "::"], capture_output=True,
                             text=True, env=MTOOLS_ENV).stdout
    assert "A Very Long File Name, With Spaces.txt" in listing  # long name bound by its checksum
    assert "igvmt.conf" in listing and "loader.conf" in listing


def test_output_is_deterministic():
    assert fat.build(FILES) == fat.build(FILES)


@pytest.mark.parametrize("files, why", [
    ({"a/../b": b""}, "not a usable file path"),
    ({"x": b"", "X": b""}, "given twice"),
    ({"f": b"1", "f/g": b"2"}, "file under a file"),
    ({"": b""}, "not a usable file path"),
])
def test_bad_trees_are_one_error(files, why):
    with pytest.raises(HarnessError, match=why):
        fat.build(files)


def test_sizes_are_bounded_before_allocation():
    class Huge:
        def __len__(self):
            return 1 << 40
    with pytest.raises(HarnessError, match="do not fit"):
        fat.build({"big": Huge()})  # type: ignore[dict-item]
    with pytest.raises(HarnessError, match="outside FAT16"):
        fat.build({"a": b"x"}, volume_bytes=1 << 20)
    with pytest.raises(HarnessError, match="more than a FAT16 volume"):
        fat.build({"a": b"x"}, volume_bytes=1 << 40)


def test_boot_disk_layout_and_cache(tmp_path):
    loader, kernel, initrd = (tmp_path / n for n in ("loader.efi", "vmlinuz", "initrd"))
    loader.write_bytes(b"MZ" + bytes(100))
    kernel.write_bytes(b"kernel")
    initrd.write_bytes(b"initrd")
    first = boot_disk.build_boot_disk(loader, kernel, initrd, "console=ttyS0", cache=tmp_path / "c")
    again = boot_disk.build_boot_disk(loader, kernel, initrd, "console=ttyS0", cache=tmp_path / "c")
    assert first == again and first.stat().st_size % 512 == 0
    other = boot_disk.build_boot_disk(loader, kernel, initrd, "quiet", cache=tmp_path / "c")
    assert other != first
    entry = boot_disk.entry_conf("console=ttyS0").decode().splitlines()
    # Boot Loader Specification keys systemd-boot reads
    assert entry[1:] == ["linux /vmlinuz", "initrd /initrd.img", "options console=ttyS0 igvmt.via=disk"]
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted({first.name, other.name})


def test_boot_disk_refusals(tmp_path):
    kernel = tmp_path / "k"
    kernel.write_bytes(b"k")
    not_pe = tmp_path / "loader"
    not_pe.write_bytes(b"\x7fELF")
    with pytest.raises(HarnessError, match="not a PE/COFF"):
        boot_disk.build_boot_disk(not_pe, kernel, kernel, "x", cache=tmp_path / "c")
    with pytest.raises(HarnessError, match="no such file|No such file"):
        boot_disk.build_boot_disk(tmp_path / "absent", kernel, kernel, "x", cache=tmp_path / "c")
    with pytest.raises(HarnessError, match="one line"):
        boot_disk.entry_conf("a\nb")
