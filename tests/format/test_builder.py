"""Builder behaviour: masks, defaults, padding, sharing, errors."""

import struct

import pytest

from harness.igvm import model as m
from harness.igvm.builder import BuildError, IgvmBuilder
from harness.igvm.defs import PageDataType, PlatformType
from harness.igvm.parser import parse
from harness.igvm.validate import validate


def test_masks_are_assigned_one_bit_each_and_default_to_all():
    b = IgvmBuilder()
    assert [b.platform(t) for t in (PlatformType.SEV_SNP, PlatformType.SEV_ES,
                                    PlatformType.NATIVE)] == [1, 2, 4]
    page = b.page(0x1000)
    assert page.compatibility_mask == 7
    assert b.platform(PlatformType.SEV, mask=0x80) == 0x80
    assert b.platform(PlatformType.TDX) == 8


def test_headers_needing_a_mask_need_a_platform():
    with pytest.raises(BuildError):
        IgvmBuilder().page(0)


def test_page_data_limits_and_padding():
    b = IgvmBuilder()
    b.platform(PlatformType.SEV_SNP)
    with pytest.raises(BuildError):
        b.page(0, bytes(4097))
    pages = b.pages(0x10000, b"\x01" * 5000)
    assert [p.gpa for p in pages] == [0x10000, 0x11000]
    assert b.pages(0x20000, b"") == []
    f = parse(b.build())
    second = f.page_data()[1]
    assert bytes(second.data) == b"\x01" * 904 + bytes(4096 - 904)


def test_flags_and_types_encode_per_specification():
    b = IgvmBuilder()
    b.platform(PlatformType.SEV_SNP)
    b.page(0x200000, large=True, unmeasured=True, shared=True, data_type=PageDataType.CPUID_XF)
    data = b.build()
    # PAGE_DATA body after fixed (24) + platform (24) + TLV (8):
    # gpa u64, mask u32, file_offset u32, flags u32, data_type u16, reserved u16
    gpa, mask, off, flags, dtype, rsvd = struct.unpack_from("<QIIIHH", data, 56)
    assert (gpa, mask, off, flags, dtype, rsvd) == (0x200000, 1, 0, 0b111, 3, 0)


def test_parameter_areas_count_up():
    b = IgvmBuilder()
    b.platform(PlatformType.NATIVE)
    assert b.parameter_area(0x1000) == 0
    assert b.parameter_area(0x1000, index=7) == 7
    assert b.parameter_area(0x1000) == 8


def test_raw_and_typed_headers_can_be_added():
    b = IgvmBuilder()
    mask = b.platform(PlatformType.SEV_SNP)
    b.add(m.ErrorRange(0x1000, mask, 0x1000))
    b.raw_header(0x30D, struct.pack("<QII", 0x2000, mask, 0x1000))
    f = parse(b.build())
    assert f.directives == [m.ErrorRange(0x1000, 1, 0x1000), m.ErrorRange(0x2000, 1, 0x1000)]


def test_builder_output_passes_strict_validation():
    from tests.format.test_roundtrip import rich_builder
    assert validate(rich_builder().build(), strict=True) == []
    assert validate(rich_builder(2).build(), strict=True) == []
