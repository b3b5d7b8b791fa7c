"""IGVM data blobs for OVMF: EFI binaries (a kernel, shim) or Secure Boot
databases carried inside the IGVM file, measured with it, instead of
coming from fw_cfg (``-kernel``).

The protocol is edk2's (OvmfPkg/Include/IndustryStandard/IgvmData.h):

* the firmware's IGVM metadata names a HOB area (IGVM_ID_HOB_AREA 0x200,
  OvmfPkg/ResetVector/X64/IgvmMetadata.nasm.inc);
* the IGVM file fills it with GUID-extension HOBs (PI specification vol. 3,
  EFI_HOB_GUID_TYPE: type 0x0004, length, reserved, GUID) named
  gEfiIgvmDataHobGuid (OvmfPkg/OvmfPkg.dec), each followed by an
  EFI_IGVM_DATA_HOB {UINT64 Address; UINT64 Length; UINT32 DataType;
  UINT32 DataFlags}, and ends the list with any other HOB type (here
  END_OF_HOB_LIST 0xFFFF);
* PlatformInitLib/Igvm.c PlatformIgvmDataHobs copies each HOB for DXE and
  reserves its block; QemuKernelLoaderFsDxe.c QemuKernelRegisterIgvmBlobs
  turns type 0x201 into the ``kernel`` blob and 0x200 into ``shim`` -- and
  when there is one, ignores fw_cfg entirely (no initrd, no command line).

The blobs are ordinary measured PAGE_DATA (on SEV-SNP they are part of the
launch digest, which is the point).  Every range is checked against the
pages the file already places and against the firmware before it is added.
"""

from __future__ import annotations

import struct
import uuid
from enum import IntEnum

from harness.errors import HarnessError
from harness.igvm import model as m
from harness.igvm.builder import serialize
from harness.igvm.ovmf import FOUR_GIB, PAGE_4K, OvmfImage
from harness.igvm.parser import parse

IGVM_DATA_HOB_GUID = uuid.UUID("3dd177ff-b632-4e25-bef3-065063d55fc4")
EFI_HOB_TYPE_GUID_EXTENSION = 0x0004
EFI_HOB_TYPE_END_OF_HOB_LIST = 0xFFFF
_HOB_HEADER = struct.Struct("<HHI")
_DATA_HOB = struct.Struct("<QQII")
HOB_SIZE = _HOB_HEADER.size + 16 + _DATA_HOB.size      # 48, a multiple of 8
#: A blob larger than this is no kernel or shim a VM would carry.
MAX_BLOB = 256 << 20


class DataType(IntEnum):
    PK = 0x100
    KEK = 0x101
    DB = 0x102
    DBX = 0x103
    SHIM = 0x200
    KERNEL = 0x201


def hob_list(blobs: list[tuple[int, int, int]], area_size: int) -> bytes:
    """The HOB area's bytes for ``(address, length, data_type)`` blobs."""
    out = b"".join(_HOB_HEADER.pack(EFI_HOB_TYPE_GUID_EXTENSION, HOB_SIZE, 0)
                   + IGVM_DATA_HOB_GUID.bytes_le + _DATA_HOB.pack(gpa, length, dtype, 0)
                   for gpa, length, dtype in blobs)
    out += _HOB_HEADER.pack(EFI_HOB_TYPE_END_OF_HOB_LIST, _HOB_HEADER.size, 0)
    if len(out) > area_size:
        raise HarnessError(f"{len(blobs)} IGVM data blobs need {len(out)} bytes of HOBs; the"
                           f" firmware's HOB area holds {area_size}")
    return out


def _pages(f: m.IgvmFile) -> set[int]:
    return {d.gpa for d in f.directives if isinstance(d, m.PageData)}


def add_blobs(igvm: bytes, fw: OvmfImage, blobs: list[tuple[int, bytes]],
              base_gpa: int) -> bytes:
    """``igvm`` (a wrap of ``fw``) with ``blobs`` -- ``(data_type, bytes)``
    -- placed from ``base_gpa`` up, page-aligned, and the HOB list that
    names them in the firmware's HOB area, for every platform of the file."""
    meta = fw.igvm_metadata
    area = meta.hob_area if meta is not None else None
    if area is None:
        raise HarnessError(f"{fw.name}: no IGVM HOB area in its IGVM metadata; this firmware"
                           " takes no IGVM data blobs (edk2 IgvmData.h)", 1)
    if base_gpa % PAGE_4K:
        raise HarnessError(f"blob base {base_gpa:#x} is not 4 KiB aligned")
    f = parse(igvm).materialize()  # extended below: plain lists
    f.buffer = None
    mask = 0
    for p in f.platforms:
        mask |= p.compatibility_mask
    used = _pages(f)
    placed, gpa, new = [], base_gpa, []
    for dtype, data in blobs:
        if not 0 < len(data) <= MAX_BLOB:
            raise HarnessError(f"IGVM data blob of {len(data)} bytes (1 to {MAX_BLOB >> 20} MiB)")
        end = gpa + len(data)
        if end > fw.base_gpa or end > FOUR_GIB:
            raise HarnessError(f"blob {gpa:#x}+{len(data):#x} runs into the firmware at"
                               f" {fw.base_gpa:#x}")
        clash = sorted(used.intersection(range(gpa, end, PAGE_4K)))
        if clash or gpa < area.start + area.size <= end or gpa <= area.start < end:
            raise HarnessError(f"blob {gpa:#x}+{len(data):#x} overlaps pages the file already"
                               f" places ({clash[0]:#x})" if clash else
                               f"blob {gpa:#x}+{len(data):#x} overlaps the HOB area")
        view = memoryview(data)
        for off in range(0, len(data), PAGE_4K):
            new.append(m.PageData(gpa + off, mask, 0, 0,
                                  bytes(view[off:off + PAGE_4K]).ljust(PAGE_4K, b"\0")))
        placed.append((gpa, len(data), int(dtype)))
        gpa = end + (-end % PAGE_4K)
    hobs = hob_list(placed, area.size)
    hob_pages = range(area.start, area.start + len(hobs), PAGE_4K)
    if used.intersection(hob_pages):
        raise HarnessError(f"{fw.name}: the file already places a page in the HOB area at"
                           f" {area.start:#x}")
    for i, page_gpa in enumerate(hob_pages):
        new.append(m.PageData(page_gpa, mask, 0, 0,
                              hobs[i * PAGE_4K:(i + 1) * PAGE_4K].ljust(PAGE_4K, b"\0")))
    f.directives.extend(new)
    return serialize(f)
