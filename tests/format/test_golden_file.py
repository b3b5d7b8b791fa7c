"""Whole-file golden vectors written by hand from the IGVM specification
(igvm_defs/src/lib.rs: IGVM_FIXED_HEADER, IGVM_VHS_VARIABLE_HEADER,
IGVM_VHS_SUPPORTED_PLATFORM, IGVM_VHS_PAGE_DATA), not produced by the builder.
The CRC32 is the IEEE CRC32 the specification names (zlib.crc32), over the
fixed header with its checksum field zero followed by the variable headers."""

import struct
import zlib

from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import PlatformType


def _file_v1_snp_one_page() -> bytes:
    # variable headers
    vh = b"".join([
        # IGVM_VHS_VARIABLE_HEADER: type=0x1 SUPPORTED_PLATFORM, length=16
        struct.pack("<II", 0x1, 16),
        # compatibility_mask=1, highest_vtl=0, platform_type=2 (SEV_SNP),
        # platform_version=1, shared_gpa_boundary=0
        struct.pack("<IBBHQ", 1, 0, 2, 1, 0),
        # type=0x302 PAGE_DATA, length=24
        struct.pack("<II", 0x302, 24),
        # gpa=0x1000, mask=1, file_offset=24+56 (=80, first file byte),
        # flags=0, data_type=0 NORMAL, reserved=0
        struct.pack("<QIIIHH", 0x1000, 1, 80, 0, 0, 0),
    ])
    assert len(vh) == 56  # (8 + 16) + (8 + 24)
    data = bytes(range(256)) * 16  # one 4 KiB page
    total = 24 + len(vh) + len(data)
    # IGVM_FIXED_HEADER: magic "IGVM", format_version 1, variable_header_offset
    # 24, variable_header_size 56, total_file_size, checksum (0 while hashing)
    fixed0 = struct.pack("<6I", 0x4D564749, 1, 24, 56, total, 0)
    crc = zlib.crc32(fixed0 + vh)
    fixed = struct.pack("<6I", 0x4D564749, 1, 24, 56, total, crc)
    return fixed + vh + data


def _file_v2_native_zero_page() -> bytes:
    vh = b"".join([
        struct.pack("<II", 0x1, 16),
        struct.pack("<IBBHQ", 1, 0, 0, 1, 0),          # NATIVE, mask 1
        struct.pack("<II", 0x302, 24),
        struct.pack("<QIIIHH", 0x0, 1, 0, 0, 0, 0),     # zero page: file_offset 0
    ])
    # No header references file data; the reference parser needs a non-empty
    # file data section, so 8 zero bytes follow.
    tail = bytes(8)
    total = 32 + len(vh) + len(tail)
    # IGVM_FIXED_HEADER_V2 adds architecture (0 = X64) and page_size 4096
    fixed0 = struct.pack("<8I", 0x4D564749, 2, 32, len(vh), total, 0, 0, 4096)
    crc = zlib.crc32(fixed0 + vh)
    return struct.pack("<8I", 0x4D564749, 2, 32, len(vh), total, crc, 0, 4096) + vh + tail


def test_builder_matches_hand_written_v1_file():
    b = IgvmBuilder()
    mask = b.platform(PlatformType.SEV_SNP)
    assert mask == 1
    b.page(0x1000, bytes(range(256)) * 16, mask=mask)
    assert b.build() == _file_v1_snp_one_page()


def test_builder_matches_hand_written_v2_file():
    b = IgvmBuilder(revision=2)
    b.platform(PlatformType.NATIVE)
    b.page(0x0)
    assert b.build() == _file_v2_native_zero_page()


def test_identical_pages_share_file_data():
    b = IgvmBuilder()
    b.platform(PlatformType.SEV_SNP)
    page = b"\xAA" * 4096
    b.page(0x1000, page)
    b.page(0x2000, page)
    out = b.build()
    # one platform (8+16) + two page data headers (8+24 each) = 88 bytes of
    # variable headers, then exactly one copy of the page.
    assert len(out) == 24 + 24 + 2 * 32 + 4096
    off1 = struct.unpack_from("<I", out, 24 + 24 + 8 + 12)[0]
    off2 = struct.unpack_from("<I", out, 24 + 24 + 32 + 8 + 12)[0]
    assert off1 == off2 == 24 + 88
