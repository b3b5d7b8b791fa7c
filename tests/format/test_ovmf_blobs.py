"""IGVM data blobs for OVMF (harness/igvm/ovmf_blobs.py): the HOB list as
the PI specification and edk2's IgvmData.h lay it out, and the checks
before a blob is placed.  Booted for real in suites/firmware/test_data_blob.py."""

from __future__ import annotations

import struct
import uuid

import pytest

from harness.errors import HarnessError
from harness.igvm import model as m
from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import PlatformType
from harness.igvm.ovmf import IgvmMetadata, IgvmSection, OvmfImage
from harness.igvm.ovmf_blobs import DataType, add_blobs, hob_list
from harness.igvm.parser import parse

HOB_AREA = 0x813000
FW_SIZE = 0x10000
# OvmfPkg/OvmfPkg.dec: gEfiIgvmDataHobGuid
GUID = uuid.UUID("3dd177ff-b632-4e25-bef3-065063d55fc4")


def firmware(hob_area=True) -> OvmfImage:
    sections = (IgvmSection(0x200, HOB_AREA, 0x1000),) if hob_area else ()
    meta = IgvmMetadata(offset=0, version=1, sections=sections)
    return OvmfImage(name="fake.fd", data=bytes(FW_SIZE), igvm_metadata=meta)


def wrap(fw: OvmfImage, extra_page: int | None = None) -> bytes:
    b = IgvmBuilder()
    b.platform(PlatformType.NATIVE)
    b.pages((1 << 32) - fw.size, fw.data)
    if extra_page is not None:
        b.page(extra_page, b"\x01")
    return b.build()


def test_hob_list_layout():
    raw = hob_list([(0x2000000, 0x1234, 0x201)], 0x1000)
    # EFI_HOB_GUID_TYPE: u16 type 0x0004, u16 length, u32 reserved, GUID;
    # then EFI_IGVM_DATA_HOB {u64 Address, u64 Length, u32 DataType, u32 DataFlags}
    assert struct.unpack_from("<HHI", raw, 0) == (0x0004, 48, 0)
    assert raw[8:24] == GUID.bytes_le
    assert struct.unpack_from("<QQII", raw, 24) == (0x2000000, 0x1234, 0x201, 0)
    assert struct.unpack_from("<HHI", raw, 48) == (0xFFFF, 8, 0)   # END_OF_HOB_LIST
    assert len(raw) == 56
    with pytest.raises(HarnessError, match="HOB area holds"):
        hob_list([(0, 1, 0x201)] * 100, 0x1000)


def test_blob_pages_and_hob_page_are_added_measured():
    fw = firmware()
    blob = bytes(range(256)) * 20          # 5120 bytes: two pages, the second padded
    f = parse(add_blobs(wrap(fw), fw, [(DataType.KERNEL, blob)], 0x2000000))
    pages = {d.gpa: d for d in f.directives if isinstance(d, m.PageData)}
    assert bytes(pages[0x2000000].data) == blob[:4096]
    assert bytes(pages[0x2001000].data)[:1024] == blob[4096:]
    assert not any(p.flags & 2 for p in pages.values())          # none unmeasured
    hob = bytes(pages[HOB_AREA].data)
    assert struct.unpack_from("<QQII", hob, 24) == (0x2000000, len(blob), 0x201, 0)


@pytest.mark.parametrize("gpa,match", [
    (0x2000001, "not 4 KiB aligned"),
    ((1 << 32) - FW_SIZE - 0x1000, "runs into the firmware"),
    (HOB_AREA - 0x1000, "overlaps the HOB area"),
])
def test_bad_placement_is_one_error(gpa, match):
    fw = firmware()
    with pytest.raises(HarnessError, match=match):
        add_blobs(wrap(fw), fw, [(DataType.KERNEL, bytes(0x2000))], gpa)


def test_firmware_without_hob_area_is_refused():
    fw = firmware(hob_area=False)
    with pytest.raises(HarnessError, match="no IGVM HOB area"):
        add_blobs(wrap(fw), fw, [(DataType.KERNEL, b"x")], 0x2000000)


def test_blob_over_an_existing_page_is_refused():
    fw = firmware()
    with pytest.raises(HarnessError, match="overlaps pages .*0x2001000"):
        add_blobs(wrap(fw, extra_page=0x2001000), fw, [(DataType.KERNEL, bytes(0x2000))],
                  0x2000000)
