"""OVMF images for the harness's own tests: Debian's builds (harness.assets) and
small synthetic images assembled here from the edk2 layouts.

The synthetic image is written from edk2's OvmfPkg/ResetVector sources
(Ia16/ResetVectorVtf0.nasm.inc, X64/OvmfSevMetadata.asm, X64/IgvmMetadata.nasm.inc),
independently of harness/igvm/ovmf.py, so the reader can be checked against it.
"""

from __future__ import annotations

import struct
import uuid

import pytest

FOOTER = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d")
RESET = uuid.UUID("00f771de-1a7e-4fcb-890e-68c77e2fb44e")
SECRET = uuid.UUID("4c2eb361-7d9b-4cc3-8081-127c90d3d294")
SEV_META = uuid.UUID("dc886566-984a-4798-a75e-5585a7bf67cc")
IGVM_META = uuid.UUID("784fa70e-3176-4677-8a20-04b68699e374")

#: (base, size, type) as in OvmfSevMetadata.asm, one zero-size section included.
SECTIONS = [(0x800000, 0x9000, 1), (0x80A000, 0x3000, 1), (0x80D000, 0x1000, 2),
            (0x80E000, 0x1000, 3), (0x80F000, 0x1000, 4), (0x811000, 0x1F000, 1),
            (0x810000, 0x1000, 0x10), (0x900000, 0, 1)]
#: (start, size, id) as in IgvmMetadata.nasm.inc.
IGVM_SECTIONS = [(0x812000, 0x1000, 0x100), (0, 0xC0, 0x101), (0xC0, 0x10, 0x102),
                 (0x813000, 0x1000, 0x200)]
RESET_ADDR = 0x80B004


def _entry(guid: uuid.UUID, data: bytes) -> bytes:
    return data + struct.pack("<H", len(data) + 18) + guid.bytes_le


def _meta(sig: bytes, rows) -> bytes:
    body = b"".join(struct.pack("<III", *r) for r in rows)
    return struct.pack("<4sIII", sig, 16 + len(body), 1, len(rows)) + body


def synthetic_ovmf(size: int = 0x40000, sev: bool = True, igvm: bool = True,
                   reset: int = RESET_ADDR, igvm_sections=None) -> bytes:
    """An image with OVMF's footer table, SEV and IGVM metadata, and a page of 'code'."""
    img = bytearray(b"\xAA" * 0x1000 + bytes(size - 0x1000))  # one non-zero page, rest zero
    sev_blob = _meta(b"ASEV", SECTIONS)
    igvm_blob = _meta(b"IGVM", IGVM_SECTIONS if igvm_sections is None else igvm_sections)
    sev_at, igvm_at = size - 0x2000, size - 0x1800
    img[sev_at:sev_at + len(sev_blob)] = sev_blob
    img[igvm_at:igvm_at + len(igvm_blob)] = igvm_blob
    entries = b""
    if igvm:
        entries += _entry(IGVM_META, struct.pack("<I", size - igvm_at))
    if sev:
        entries += _entry(SEV_META, struct.pack("<I", size - sev_at))
    entries += _entry(SECRET, struct.pack("<II", 0x810000, 0xC00))
    entries += _entry(RESET, struct.pack("<I", reset))
    table = entries + struct.pack("<H", len(entries) + 18) + FOOTER.bytes_le
    end = size - 0x20
    img[end - len(table):end] = table
    img[size - 0x10:size - 0x0C] = b"\x90\x90\xEB\xFE"  # a reset vector, as bytes
    return bytes(img)


def debian_ovmf(name: str):
    """Path of an installed Debian OVMF build, or skip naming how to install it."""
    msg = f"firmware '{name}' is not installed: run `igvm-harness firmware fetch`"
    try:
        from harness import assets
    except ImportError:
        pytest.skip(msg)
    try:
        return assets.path(name)
    except assets.AssetMissing as exc:
        pytest.skip(str(exc))
