"""The SEV kernel hashes table (harness/igvm/sev_hashes.py) equals the one
sev-snp-measure (PyPI; sevsnpmeasure/sev_hashes.py, written to match QEMU's
target/i386/sev.c build_kernel_loader_hashes) builds for the same files,
and lands where the firmware's footer table says.  Booted for real in
suites/firmware/test_linux.py (the AmdSev build verifies it)."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.igvm import model as m
from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import PlatformType
from harness.igvm.ovmf import GpaBlock, OvmfImage
from harness.igvm.parser import parse
from harness.igvm.sev_hashes import PADDED_SIZE, TABLE_SIZE, add_hash_table, hash_table

sev_hashes = pytest.importorskip("sevsnpmeasure.sev_hashes",
                                 reason="sev-snp-measure not installed (pip install -e '.[dev]')")

KERNEL, INITRD = b"MZ kernel bytes" * 1000, b"070701 initrd" * 300
CMDLINE = "console=ttyS0 efi=debug panic=-1"
AREA = GpaBlock(gpa=0x810C00, size=0x400)   # Debian's 2026.08 OVMF.amdsev.fd footer


@pytest.fixture
def files(tmp_path):
    k, i = tmp_path / "vmlinuz", tmp_path / "initrd"
    k.write_bytes(KERNEL)
    i.write_bytes(INITRD)
    return str(k), str(i)


@pytest.mark.parametrize("initrd", [True, False])
def test_table_equals_sev_snp_measure(files, initrd):
    theirs = sev_hashes.SevHashes(files[0], files[1] if initrd else "", CMDLINE).construct_table()
    assert hash_table(KERNEL, INITRD if initrd else b"", CMDLINE) == theirs
    assert (TABLE_SIZE, PADDED_SIZE) == (168, 176) == (len(theirs) - 8, len(theirs))


def _firmware(area=AREA) -> OvmfImage:
    return OvmfImage(name="fake.fd", data=bytes(0x10000), sev_hash_table=area)


def _wrap(fw: OvmfImage) -> bytes:
    b = IgvmBuilder()
    b.platform(PlatformType.NATIVE)
    b.platform(PlatformType.SEV)
    b.pages((1 << 32) - fw.size, fw.data)
    return b.build()


def test_page_lands_at_the_footer_area(files):
    fw = _firmware()
    f = parse(add_hash_table(_wrap(fw), fw, KERNEL, INITRD, CMDLINE))
    page = next(d for d in f.directives if isinstance(d, m.PageData) and d.gpa == 0x810000)
    offset = AREA.gpa - 0x810000
    assert bytes(page.data) == sev_hashes.SevHashes(files[0], files[1], CMDLINE).construct_page(offset)
    assert page.compatibility_mask == 0b11 and not page.flags & 2     # every platform, measured


@pytest.mark.parametrize("area,match", [
    (None, "no SEV hash table area"),
    (GpaBlock(0x810C00, 64), "smaller than"),
    (GpaBlock(0x810FC0, 0x400), "crosses a page"),
])
def test_unusable_area_is_one_error(area, match):
    fw = _firmware(area)
    with pytest.raises(HarnessError, match=match):
        add_hash_table(_wrap(fw), fw, KERNEL, INITRD, CMDLINE)


def test_zero_page_of_the_area_is_replaced_and_data_is_refused():
    # wrap_ovmf gives SEV-SNP's KERNEL_HASHES section a zero page
    fw = _firmware()
    b = IgvmBuilder()
    b.platform(PlatformType.NATIVE)
    snp = b.platform(PlatformType.SEV_SNP)
    b.pages((1 << 32) - fw.size, fw.data)
    b.page(0x810000, None, mask=snp)
    f = parse(add_hash_table(b.build(), fw, KERNEL, INITRD, CMDLINE))
    pages = [d for d in f.directives if isinstance(d, m.PageData) and d.gpa == 0x810000]
    assert len(pages) == 1 and pages[0].compatibility_mask == 0b11 and pages[0].data is not None
    b.page(0x811000, b"x")
    b.page(0x810000, b"data", mask=1)
    with pytest.raises(HarnessError, match="already places data"):
        add_hash_table(b.build(), fw, KERNEL, INITRD, CMDLINE)
