"""The SEV kernel hashes table, carried in an IGVM wrap of OVMF.

QEMU writes this table into the firmware's KERNEL_HASHES area for an SEV
guest with ``kernel-hashes=on`` (target/i386/sev.c
build_kernel_loader_hashes: a SevHashTable of SHA-256 digests of the
command line with its NUL, the initrd and the kernel file, padded to 16
bytes); OVMF's AmdSev build refuses every ``-kernel`` blob whose digest is
not in it (OvmfPkg/AmdSev/BlobVerifierLibSevHashes).  Putting the same
table into the IGVM file, as a page at the area the firmware's footer table
names (SEV_HASH_TABLE_RV_GUID), boots that build with ``-kernel`` -- and the
page is measured with the file, which is measured direct boot through IGVM.

Layout (QEMU_PACKED; GUIDs little-endian as EFI writes them):
header GUID, u16 length, then three entries {GUID, u16 length (50),
32-byte SHA-256} for cmdline, initrd, kernel.
"""

from __future__ import annotations

import hashlib
import struct
import uuid

from harness.errors import HarnessError
from harness.igvm import model as m
from harness.igvm.builder import serialize
from harness.igvm.ovmf import PAGE_4K, OvmfImage
from harness.igvm.parser import parse

#: target/i386/sev.c sev_hash_table_header_guid and the entry GUIDs.
HEADER_GUID = uuid.UUID("9438d606-4f22-4cc9-b479-a793d411fd21")
CMDLINE_GUID = uuid.UUID("97d02dd8-bd20-4c94-aa78-e7714d36ab2a")
INITRD_GUID = uuid.UUID("44baf731-3a2f-4bd7-9af1-41e29169781d")
KERNEL_GUID = uuid.UUID("4de79437-abd2-427f-b835-d5b172d2045b")
ENTRY_SIZE = 16 + 2 + 32
TABLE_SIZE = 16 + 2 + 3 * ENTRY_SIZE          # sizeof(SevHashTable) = 168
PADDED_SIZE = TABLE_SIZE + (-TABLE_SIZE % 16)  # PaddedSevHashTable = 176


def _entry(guid: uuid.UUID, data: bytes) -> bytes:
    return guid.bytes_le + struct.pack("<H", ENTRY_SIZE) + hashlib.sha256(data).digest()


def hash_table(kernel: bytes, initrd: bytes, cmdline: str) -> bytes:
    """The padded table for these blobs as OVMF fetches them: the kernel
    file unmodified (QEMU 10.2 hashes the un-patched setup header with the
    kernel, hw/i386/x86-common.c x86_load_linux), the initrd file (empty
    when there is none), the command line with its terminating NUL."""
    body = (HEADER_GUID.bytes_le + struct.pack("<H", TABLE_SIZE)
            + _entry(CMDLINE_GUID, cmdline.encode() + b"\0") + _entry(INITRD_GUID, initrd)
            + _entry(KERNEL_GUID, kernel))
    return body.ljust(PADDED_SIZE, b"\0")


def add_hash_table(igvm: bytes, fw: OvmfImage, kernel: bytes, initrd: bytes,
                   cmdline: str) -> bytes:
    """``igvm`` (a wrap of ``fw``) with the hashes table in the firmware's
    hash-table area, as one measured page for every platform of the file
    (replacing the zero page a wrap may hold there for SEV-SNP)."""
    area = fw.sev_hash_table
    if area is None:
        raise HarnessError(f"{fw.name}: no SEV hash table area in its footer table; this"
                           " firmware does not verify -kernel blobs", 1)
    if area.size < PADDED_SIZE:
        raise HarnessError(f"{fw.name}: SEV hash table area of {area.size} bytes is smaller"
                           f" than the {PADDED_SIZE}-byte table")
    page = area.gpa - area.gpa % PAGE_4K
    if area.gpa + PADDED_SIZE > page + PAGE_4K:
        raise HarnessError(f"{fw.name}: SEV hash table area {area.gpa:#x} crosses a page")
    f = parse(igvm).materialize()  # edited below: plain lists
    f.buffer = None
    mask = 0
    for p in f.platforms:
        mask |= p.compatibility_mask
    data = bytearray(PAGE_4K)
    off = area.gpa - page
    data[off:off + PADDED_SIZE] = hash_table(kernel, initrd, cmdline)
    hashes = m.PageData(page, mask, 0, 0, bytes(data))
    # wrap_ovmf gives SEV-SNP's KERNEL_HASHES section a zero page (no
    # -kernel hashes): the table takes its place, for every platform.
    there = [i for i, d in enumerate(f.directives) if isinstance(d, m.PageData) and d.gpa == page]
    if any(f.directives[i].data is not None or f.directives[i].data_type != 0 for i in there):
        raise HarnessError(f"the file already places data at the page {page:#x} of the hash table")
    if there:
        f.directives[there[0]] = hashes
        for i in reversed(there[1:]):
            del f.directives[i]
    else:
        f.directives.append(hashes)
    return serialize(f)
