"""Makers of the hostile inputs of issue 13, each from first principles
(the IGVM fixed header and TLV layout of igvm_defs, built here with
struct, or the harness builder), so that tests and benchmarks share them.

Each maker returns bytes; sizes are parameters so that benchmarks can grow
them.  Nothing here reads or trusts the code under test's limits.
"""

from __future__ import annotations

import struct
import zlib

from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import PlatformType

IGVM_MAGIC = 0x4D564749  # 'IGVM', igvm_defs IGVM_MAGIC_VALUE
FIXED_V1 = struct.Struct("<6I")  # magic, version, vho, vhs, total, checksum


def parameter_area(number_of_bytes: int, platform=PlatformType.SEV_SNP) -> bytes:
    """A valid small file whose PARAMETER_AREA declares ``number_of_bytes``
    (no file data) and is inserted: the area's size is only a number."""
    b = IgvmBuilder()
    b.platform(platform)
    b.page(0x100000, b"\x90" * 16)
    idx = b.parameter_area(number_of_bytes)
    b.vp_count(idx)
    b.parameter_insert(0x200000, idx)
    return b.build()


def relocation_regions(count: int, overlap_last: bool = False, mask_bits: int = 1,
                       stride: int = 0x200000) -> bytes:
    """``count`` disjoint 2 MiB RELOCATABLE_REGIONs (a VSM platform per mask
    bit, with the VBS VP context they need); ``overlap_last`` makes the last
    region overlap the first; ``stride=0`` puts them all at one GPA (each
    overlaps every earlier one)."""
    from harness.igvm import model as m
    from harness.igvm import defs
    b = IgvmBuilder()
    mask = 0
    for _ in range(mask_bits):
        mask |= b.platform(PlatformType.VSM_ISOLATION, highest_vtl=2)
    for i in range(count):
        gpa = 0x40000000 + i * stride
        if overlap_last and i == count - 1:
            gpa = 0x40000000
        b.add(m.RelocatableRegion(compatibility_mask=mask, vp_index=0, vtl=0, flags=0,
                                  relocation_alignment=0x200000, relocation_region_gpa=gpa,
                                  relocation_region_size=0x200000,
                                  minimum_relocation_gpa=gpa, maximum_relocation_gpa=gpa))
    regs = struct.pack("<I", 1) + defs.VBS_VP_CONTEXT_REGISTER.pack(
        vtl=0, register_name=0x20010, mbz=bytes(11), register_value=bytes(16))
    bit = 1
    while bit <= mask:
        if mask & bit:
            b.add(m.VpContext(0, bit, 0, regs))
        bit <<= 1
    return b.build()


def bad_headers(count: int, header_type: int = 0x7F) -> bytes:
    """A native platform header, then ``count`` 8-byte headers of a type in
    no section (each one ``unknown-header-type``), then one byte of file data;
    checksum and total size correct.  4 million of them make 32 MB."""
    # IGVM_VHS_SUPPORTED_PLATFORM (type 0x1, 0x10 bytes): mask u32,
    # highest_vtl u8, platform_type u8, platform_version u16, shared_gpa_boundary u64
    platform = struct.pack("<II", 0x1, 0x10) + struct.pack("<IBBHQ", 1, 0, int(PlatformType.NATIVE), 1, 0)
    bad = struct.pack("<II", header_type, 0) * count
    vho = FIXED_V1.size
    vhs = len(platform) + len(bad)
    total = vho + vhs + 1
    head = bytearray(FIXED_V1.pack(IGVM_MAGIC, 1, vho, vhs, total, 0))
    crc = zlib.crc32(bad, zlib.crc32(platform, zlib.crc32(head)))
    struct.pack_into("<I", head, 20, crc)
    return bytes(head) + platform + bad + b"\0"


def sparse_zeros(path, size: int) -> None:
    """A sparse file of ``size`` zero bytes (costs no disk)."""
    with open(path, "wb") as fh:
        fh.truncate(size)


# Variable header types of igvm_defs IgvmVariableHeaderType.
_PAGE_DATA, _PARAMETER_AREA, _PARAMETER_INSERT, _VP_COUNT = 0x302, 0x301, 0x303, 0x307


def _file(headers: bytes, data: bytes = b"\0") -> bytes:
    """A v1 file of these variable headers and file data, checksum and size right."""
    vho = FIXED_V1.size
    total = vho + len(headers) + len(data)
    head = bytearray(FIXED_V1.pack(IGVM_MAGIC, 1, vho, len(headers), total, 0))
    struct.pack_into("<I", head, 20, zlib.crc32(headers, zlib.crc32(head)))
    return bytes(head) + headers + data


def _platform(ptype) -> bytes:
    return struct.pack("<II", 0x1, 0x10) + struct.pack("<IBBHQ", 1, 0, int(ptype), 1, 0)


def zero_pages(count: int, platform=PlatformType.SEV_SNP) -> bytes:
    """A valid file of one platform and ``count`` contiguous 4 KiB zero pages
    from 1 MiB up: 32-byte IGVM_VHS_PAGE_DATA headers with file_offset 0, so
    the file is all headers (32 MiB for 1,048,576 pages)."""
    page = struct.Struct("<IIQIIIHH")  # type, length, gpa, mask, file_offset, flags, data_type, reserved
    body = b"".join(page.pack(_PAGE_DATA, 24, 0x100000 + i * 0x1000, 1, 0, 0, 0, 0)
                    for i in range(count))
    return _file(_platform(platform) + body)


def vp_count_parameters(count: int, platform=PlatformType.SEV_SNP) -> bytes:
    """A valid file: a 4 KiB PARAMETER_AREA, ``count`` 16-byte
    VP_COUNT_PARAMETER headers into it (each a header the whole-file rules
    read), its PARAMETER_INSERT and one page of data."""
    area = struct.pack("<IIQII", _PARAMETER_AREA, 16, 0x1000, 0, 0)
    param = struct.pack("<IIII", _VP_COUNT, 8, 0, 0) * count
    insert = struct.pack("<IIQII", _PARAMETER_INSERT, 16, 0x200000, 1, 0)
    return _file(_platform(platform) + area + param + insert)


def unaligned_pages(count: int, reserved: bool = False) -> bytes:
    """``count`` zero-page headers whose GPA is not 4 KiB aligned (GPA
    ``0x100001 + i * 0x1000``, so no two headers are byte-identical): one
    ``gpa-unaligned`` violation each, two with ``reserved`` (the u16
    reserved field set: ``reserved-nonzero`` too)."""
    page = struct.Struct("<IIQIIIHH")
    body = b"".join(page.pack(_PAGE_DATA, 24, 0x100001 + i * 0x1000, 1, 0, 0, 0, int(reserved))
                    for i in range(count))
    return _file(_platform(PlatformType.SEV_SNP) + body)


def with_reused_area_index(headers_file: bytes) -> bytes:
    """``headers_file`` (a maker's output above, one byte of file data) with
    two PARAMETER_AREA headers of index 0 appended: one more violation,
    ``parameter-area-index-reused``, found by the whole-file rules."""
    vho, vhs = struct.unpack_from("<II", headers_file, 8)
    area = struct.pack("<IIQII", _PARAMETER_AREA, 16, 0x1000, 0, 0)
    return _file(headers_file[vho:vho + vhs] + area + area, headers_file[vho + vhs:])


def alternating_bad_headers(count: int) -> bytes:
    """As :func:`bad_headers`, but the 8-byte headers alternate between two
    unknown types (0x7E, 0x7F), so no two neighbours are byte-identical."""
    bad = b"".join(struct.pack("<II", 0x7E + (i & 1), 0) for i in range(count))
    return _file(_platform(PlatformType.NATIVE) + bad)


def distinct_pages(count: int, platforms=(PlatformType.NATIVE, PlatformType.SEV,
                                          PlatformType.SEV_ES, PlatformType.SEV_SNP)) -> bytes:
    """A valid file: ``platforms`` (one mask bit each) and ``count`` 4 KiB
    pages of distinct data for all of them (each page starts with its
    number), in one run of file data: 256 MiB for 65,536 pages.  Laid out
    here from igvm_defs' IGVM_VHS_SUPPORTED_PLATFORM and IGVM_VHS_PAGE_DATA."""
    plats = b"".join(struct.pack("<II", 0x1, 16) + struct.pack("<IBBHQ", 1 << i, 0, int(p), 1, 0)
                     for i, p in enumerate(platforms))
    every = (1 << len(platforms)) - 1
    data_start = FIXED_V1.size + len(plats) + count * 32
    page = struct.Struct("<IIQIIIHH")  # type, length, gpa, mask, file_offset, flags, data_type, reserved
    pages = b"".join(page.pack(_PAGE_DATA, 24, 0x100000 + i * 0x1000, every, data_start + i * 0x1000,
                               0, 0, 0) for i in range(count))
    payload = bytearray(count * 0x1000)
    for i in range(count):
        payload[i * 0x1000:i * 0x1000 + 8] = i.to_bytes(8, "little")
    return _file(plats + pages, bytes(payload))
