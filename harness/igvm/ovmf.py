"""Read an OVMF firmware volume (.fd): the GUIDed footer table and what it points to.

Layouts, written from the sources that define them (nothing copied):

* edk2 ``OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.nasm.inc`` -- the *GUIDed
  footer table* ends 0x20 bytes before 4 GiB (the end of the image): the
  footer GUID 96b582de-1fb2-45f7-baea-a366c55a082d occupies
  ``[end-0x30, end-0x20)`` and is preceded by a u16, the length of the whole
  table (footer included).  Entries are walked backwards from there; each is
  ``data | u16 length (data + 18) | GUID``.  Known entries: the SEV-ES reset
  block (u32: CS base [31:16], IP [15:0]), the SEV launch secret and SEV hash
  table blocks (u32 base, u32 size), and the offsets (u32, counted back from
  4 GiB) of the SEV metadata, TDX metadata and IGVM metadata.
* edk2 ``OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm`` -- ``'ASEV'``, u32
  length, u32 version (1), u32 section count, then sections of u32 base,
  u32 size, u32 type (1 SNP_SEC_MEM, 2 SNP_SECRETS, 3 CPUID, 4 SVSM_CAA,
  0x10 KERNEL_HASHES).
* edk2 ``OvmfPkg/ResetVector/X64/IgvmMetadata.nasm.inc`` -- ``'IGVM'``, u32
  length, u32 version, u32 section count, sections of u32 start, u32 size,
  u32 id: 0x100 parameter area (GPA, size), 0x101 memory map and 0x102 VP
  count (offset and size *inside* the parameter area), 0x200 HOB area (GPA,
  size; where IGVM data blobs of ``OvmfPkg/Include/IndustryStandard/IgvmData.h``
  go).
* QEMU ``hw/i386/pc_sysfw_ovmf.c`` (pc_system_parse_ovmf_flash,
  pc_system_ovmf_table_find) and ``target/i386/sev.c``
  (pc_system_parse_sev_metadata, sev_es_find_reset_vector): the same walk,
  which is what a launch depends on.  Unlike QEMU, a malformed table here is an
  error, not a silent "no OVMF table".

The image is untrusted: every offset and length read from it is checked
against the image (and the table) before it is followed.
"""

from __future__ import annotations

import os
import struct
from enum import IntEnum

from harness.errors import HarnessError
from harness.igvm.defs import IGVM_MAGIC_BYTES
from harness.record import Factory, Record

PAGE_4K = 0x1000
FOUR_GIB = 1 << 32
#: The footer GUID ends this many bytes before the end of the image (ResetVectorVtf0).
BYTES_AFTER_FOOTER = 0x20
GUID_SIZE = 16
ENTRY_TRAILER = 2 + GUID_SIZE  # u16 length + GUID
#: QEMU maps -bios images below 4 GiB; x86 firmware volumes are a few MiB.  Larger
#: inputs are refused before anything is read from them.
MAX_IMAGE = 16 << 20
MIN_IMAGE = PAGE_4K

class Guid:
    """An EFI GUID: its text form and its mixed-endian bytes (``bytes_le``, as
    uuid.UUID names them: the first three fields little endian).  Not
    uuid.UUID: importing uuid costs ~2 ms of ``measure FW.fd``'s start-up
    (it imports ``platform``), for three byte swaps."""

    __slots__ = ("bytes_le",)

    def __init__(self, text: str | None = None, *, bytes_le: bytes | None = None) -> None:
        if bytes_le is None:
            raw = bytes.fromhex(text.replace("-", ""))
            if len(raw) != 16:
                raise ValueError(f"not a GUID: {text!r}")
            bytes_le = raw[3::-1] + raw[5:3:-1] + raw[7:5:-1] + raw[8:]
        if len(bytes_le) != 16:
            raise ValueError("a GUID is 16 bytes")
        self.bytes_le = bytes(bytes_le)

    def __str__(self) -> str:
        b = self.bytes_le
        h = (b[3::-1] + b[5:3:-1] + b[7:5:-1] + b[8:]).hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def __repr__(self) -> str:
        return f"Guid({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Guid) and other.bytes_le == self.bytes_le

    def __hash__(self) -> int:
        return hash(self.bytes_le)


FOOTER_GUID = Guid("96b582de-1fb2-45f7-baea-a366c55a082d")


#: GUID -> name of the footer-table entries (ResetVectorVtf0.nasm.inc).
KNOWN_ENTRIES: dict[Guid, str] = {
    Guid("00f771de-1a7e-4fcb-890e-68c77e2fb44e"): "sev-es-reset-block",
    Guid("4c2eb361-7d9b-4cc3-8081-127c90d3d294"): "sev-secret-block",
    Guid("7255371f-3a3b-4b04-927b-1da6efa8d454"): "sev-hash-table-block",
    Guid("dc886566-984a-4798-a75e-5585a7bf67cc"): "sev-metadata-offset",
    Guid("e47a6535-984a-4798-865e-4685a7bf8ec2"): "tdx-metadata-offset",
    Guid("784fa70e-3176-4677-8a20-04b68699e374"): "igvm-metadata-offset",
}
_GUID_OF = {name: g for g, name in KNOWN_ENTRIES.items()}


class SevSectionType(IntEnum):
    """OVMF_SECTION_TYPE_* of OvmfSevMetadata.asm."""

    SNP_SEC_MEM = 0x1
    SNP_SECRETS = 0x2
    CPUID = 0x3
    SVSM_CAA = 0x4
    KERNEL_HASHES = 0x10


class IgvmSectionId(IntEnum):
    """IGVM_ID_* of IgvmMetadata.nasm.inc."""

    PARAM_AREA = 0x100
    PARAM_MEMORY_MAP = 0x101
    PARAM_VP_COUNT = 0x102
    HOB_AREA = 0x200


_META_HEAD = struct.Struct("<4sIII")  # signature, length, version, count
_META_SECTION = struct.Struct("<III")


class FooterEntry(Record, frozen=True):
    guid: Guid
    offset: int  # file offset of the entry's data
    data: bytes

    @property
    def name(self) -> str | None:
        return KNOWN_ENTRIES.get(self.guid)


class SevSection(Record, frozen=True):
    type: int
    gpa: int
    size: int

    @property
    def name(self) -> str:
        try:
            return SevSectionType(self.type).name
        except ValueError:
            return f"type 0x{self.type:x}"

    @property
    def end(self) -> int:
        return self.gpa + self.size


class SevMetadata(Record, frozen=True):
    offset: int  # file offset of 'ASEV'
    version: int
    sections: tuple[SevSection, ...]  # zero-size sections left out
    skipped: int  # zero-size sections (QEMU still walks them; nothing to do)


class ResetBlock(Record, frozen=True):
    """The SEV-ES AP reset address (sev_es_parse_reset_block)."""

    address: int

    @property
    def cs_base(self) -> int:
        return self.address & 0xFFFF0000

    @property
    def ip(self) -> int:
        return self.address & 0xFFFF


class IgvmSection(Record, frozen=True):
    id: int
    start: int
    size: int

    @property
    def name(self) -> str:
        try:
            return IgvmSectionId(self.id).name
        except ValueError:
            return f"id 0x{self.id:x}"


class IgvmMetadata(Record, frozen=True):
    offset: int
    version: int
    sections: tuple[IgvmSection, ...]

    def find(self, ident: IgvmSectionId) -> IgvmSection | None:
        return next((s for s in self.sections if s.id == ident and s.size), None)

    @property
    def param_area(self) -> IgvmSection | None:
        return self.find(IgvmSectionId.PARAM_AREA)

    @property
    def memory_map(self) -> IgvmSection | None:
        return self.find(IgvmSectionId.PARAM_MEMORY_MAP)

    @property
    def vp_count(self) -> IgvmSection | None:
        return self.find(IgvmSectionId.PARAM_VP_COUNT)

    @property
    def hob_area(self) -> IgvmSection | None:
        return self.find(IgvmSectionId.HOB_AREA)


class GpaBlock(Record, frozen=True):
    """A (base, size) block of the footer table (secret / hash table)."""

    gpa: int
    size: int


class OvmfImage(Record):
    name: str
    data: bytes | memoryview
    footer_entries: list[FooterEntry] = Factory(list)
    sev_metadata: SevMetadata | None = None
    reset_block: ResetBlock | None = None
    igvm_metadata: IgvmMetadata | None = None
    sev_secret: GpaBlock | None = None
    sev_hash_table: GpaBlock | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def base_gpa(self) -> int:
        """QEMU maps the image so that it ends at 4 GiB (hw/i386/x86-common.c: x86_bios_rom_init)."""
        return FOUR_GIB - len(self.data)

    def entry(self, name: str) -> FooterEntry | None:
        g = _GUID_OF[name]
        return next((e for e in self.footer_entries if e.guid == g), None)

    def snp_sections(self) -> list[SevSection]:
        return list(self.sev_metadata.sections) if self.sev_metadata else []


def _err(name: str, msg: str) -> HarnessError:
    return HarnessError(f"{name}: {msg}", 1)


def looks_like_ovmf(data) -> bool:
    """True when ``data`` ends with OVMF's GUIDed footer (content, not file name)."""
    n = len(data)
    if n < MIN_IMAGE:
        return False
    at = n - BYTES_AFTER_FOOTER - GUID_SIZE
    return bytes(data[at:at + GUID_SIZE]) == FOOTER_GUID.bytes_le


def is_ovmf_file(data) -> bool:
    """An OVMF volume rather than an IGVM file (both told apart by content, never by name)."""
    return bytes(data[:4]) != IGVM_MAGIC_BYTES and looks_like_ovmf(data)


def _footer(data, name: str) -> list[FooterEntry]:
    n = len(data)
    guid_at = n - BYTES_AFTER_FOOTER - GUID_SIZE
    len_at = guid_at - 2
    (total,) = struct.unpack_from("<H", data, len_at)
    body = total - ENTRY_TRAILER  # QEMU: tot_len = length - sizeof(guid) - sizeof(u16)
    if body < 0 or body > len_at:
        raise _err(name, f"OVMF footer table length {total} is invalid (table would start "
                         "outside the image; hw/i386/pc_sysfw_ovmf.c: 'OVMF table has invalid size')")
    lo = len_at - body  # first byte of the table
    entries: list[FooterEntry] = []
    ptr = len_at  # end of the last entry
    while ptr - lo >= ENTRY_TRAILER:
        g = Guid(bytes_le=bytes(data[ptr - GUID_SIZE:ptr]))
        (length,) = struct.unpack_from("<H", data, ptr - ENTRY_TRAILER)
        if length < ENTRY_TRAILER or length > ptr - lo:
            raise _err(name, f"OVMF footer entry {g} at offset {ptr - ENTRY_TRAILER:#x} has length "
                             f"{length}, outside the {body}-byte table")
        start = ptr - length
        entries.append(FooterEntry(g, start, bytes(data[start:ptr - ENTRY_TRAILER])))
        ptr = start
    if ptr != lo:
        raise _err(name, f"OVMF footer table has {ptr - lo} stray byte(s) at offset {lo:#x}")
    return entries


def _u32s(e: FooterEntry, count: int, name: str) -> tuple[int, ...]:
    need = 4 * count
    if len(e.data) < need:
        raise _err(name, f"OVMF footer entry {e.name} has {len(e.data)} data bytes, needs {need}")
    return struct.unpack_from(f"<{count}I", e.data, 0)


def _metadata_at(data, name: str, what: str, sig: bytes, back: int) -> tuple[int, int, int, list]:
    """(offset, version, count, raw sections) of a metadata blob ``back`` bytes before 4 GiB."""
    n = len(data)
    if back < _META_HEAD.size or back > n:
        raise _err(name, f"{what} offset {back:#x} (from 4 GiB) is outside the {n:#x}-byte image")
    at = n - back
    magic, length, version, count = _META_HEAD.unpack_from(data, at)
    if magic != sig:
        raise _err(name, f"{what} at offset {at:#x} has signature {magic!r}, expected {sig!r}")
    if length < _META_HEAD.size or length > back:
        raise _err(name, f"{what} length {length} runs past the end of the image")
    if count > (length - _META_HEAD.size) // _META_SECTION.size:
        raise _err(name, f"{what} declares {count} sections but its {length} bytes hold "
                         f"{(length - _META_HEAD.size) // _META_SECTION.size}")
    raw = [_META_SECTION.unpack_from(data, at + _META_HEAD.size + i * _META_SECTION.size)
           for i in range(count)]
    return at, version, count, raw


def _sev_metadata(data, e: FooterEntry, name: str) -> SevMetadata:
    (back,) = _u32s(e, 1, name)
    at, version, _, raw = _metadata_at(data, name, "SEV metadata", b"ASEV", back)
    sections, skipped = [], 0
    for base, size, typ in raw:
        if size == 0:
            skipped += 1
            continue
        if base % PAGE_4K or size % PAGE_4K:
            raise _err(name, f"SEV metadata section type {typ:#x} at {base:#x}+{size:#x} is not "
                             "page aligned (SNP_LAUNCH_UPDATE takes whole pages)")
        if base + size > FOUR_GIB:
            raise _err(name, f"SEV metadata section type {typ:#x} at {base:#x}+{size:#x} "
                             "runs past 4 GiB")
        sections.append(SevSection(typ, base, size))
    return SevMetadata(at, version, tuple(sections), skipped)


def _igvm_metadata(data, e: FooterEntry, name: str) -> IgvmMetadata:
    (back,) = _u32s(e, 1, name)
    at, version, _, raw = _metadata_at(data, name, "IGVM metadata", b"IGVM", back)
    secs = tuple(IgvmSection(i, s, z) for s, z, i in raw)
    out = IgvmMetadata(at, version, secs)
    for s in secs:
        if s.id in (IgvmSectionId.PARAM_AREA, IgvmSectionId.HOB_AREA) and s.size:
            if s.start % PAGE_4K or s.size % PAGE_4K or s.start + s.size > FOUR_GIB:
                raise _err(name, f"IGVM metadata {s.name} at {s.start:#x}+{s.size:#x} is not a "
                                 "page-aligned range below 4 GiB")
    area = out.param_area
    for s in (out.memory_map, out.vp_count):
        if s is None:
            continue
        if area is None:
            raise _err(name, f"IGVM metadata declares {s.name} but no parameter area")
        if s.start + s.size > area.size:
            raise _err(name, f"IGVM metadata {s.name} at offset {s.start:#x}+{s.size:#x} lies "
                             f"outside the {area.size:#x}-byte parameter area")
    return out


def read(data, name: str = "OVMF.fd") -> OvmfImage:
    """Parse an OVMF image; a file that is not OVMF, or is malformed, raises one HarnessError."""
    n = len(data)
    if n > MAX_IMAGE:
        raise _err(name, f"{n} bytes is larger than any x86 firmware image QEMU maps below 4 GiB "
                         f"(limit {MAX_IMAGE >> 20} MiB)")
    if not looks_like_ovmf(data):
        raise _err(name, "not an OVMF image: no GUIDed footer table (GUID "
                         f"{FOOTER_GUID}) at 4 GiB - 0x30 (edk2 OvmfPkg/ResetVector/Ia16/"
                         "ResetVectorVtf0.nasm.inc)")
    img = OvmfImage(name, data, _footer(data, name))
    for e in img.footer_entries:
        kind = e.name
        if kind == "sev-metadata-offset":
            img.sev_metadata = _sev_metadata(data, e, name)
        elif kind == "igvm-metadata-offset":
            img.igvm_metadata = _igvm_metadata(data, e, name)
        elif kind == "sev-es-reset-block":
            (addr,) = _u32s(e, 1, name)
            img.reset_block = ResetBlock(addr) if addr else None
        elif kind == "sev-secret-block":
            base, size = _u32s(e, 2, name)
            img.sev_secret = GpaBlock(base, size) if size else None
        elif kind == "sev-hash-table-block":
            base, size = _u32s(e, 2, name)
            img.sev_hash_table = GpaBlock(base, size) if size else None
    return img


def _read_bounded(name: str, limit: int = MAX_IMAGE) -> bytes:
    """The bytes of the regular file ``name``, refused before reading beyond ``limit``
    (firmware is small: reading beats mapping, whose page faults cost more than the copy)."""
    from harness.inputs import read_input
    return read_input(name, limit, lambda size: f"{size} bytes is larger than any x86 firmware "
                                                f"image QEMU maps below 4 GiB (limit "
                                                f"{MAX_IMAGE >> 20} MiB)")


def load(path, vars_path=None) -> OvmfImage:
    """Read an OVMF image from ``path``, refused beyond :data:`MAX_IMAGE`.

    With ``vars_path`` (a split build: ``OVMF_CODE_4M.fd`` + ``OVMF_VARS_4M.fd``)
    the image is the variable store followed by the code, which is the guest
    physical layout QEMU gives the two pflash units: unit 0 (code) ends at
    4 GiB and unit 1 (vars) lies directly below it (hw/i386/pc_sysfw.c:
    pc_system_flash_map maps the units top-down from 4 GiB).
    """
    name = os.fspath(path)
    code = _read_bounded(name)
    if vars_path is None:
        return read(code, name)
    vname = os.fspath(vars_path)
    store = _read_bounded(vname, MAX_IMAGE - len(code))
    if len(store) % 0x1000:
        raise _err(vname, f"a variable store of {len(store)} bytes is not a multiple of 4096 "
                          "(QEMU refuses such a pflash unit: hw/i386/pc_sysfw.c "
                          "pc_system_flash_map, FLASH_SECTOR_SIZE)")
    return read(store + code, f"{vname}+{name}")


def describe(img: OvmfImage) -> dict:
    """A JSON-friendly summary (``igvm-harness inspect FW.fd --json``)."""
    def block(b):
        return None if b is None else {"gpa": f"{b.gpa:#x}", "size": f"{b.size:#x}"}
    meta = img.sev_metadata
    igvm = img.igvm_metadata
    return {
        "kind": "ovmf",
        "size": img.size,
        "base_gpa": f"{img.base_gpa:#x}",
        "footer_entries": [{"guid": str(e.guid), "name": e.name, "offset": f"{e.offset:#x}",
                            "data": e.data.hex()} for e in img.footer_entries],
        "sev_es_reset_block": None if img.reset_block is None else {
            "address": f"{img.reset_block.address:#x}", "cs_base": f"{img.reset_block.cs_base:#x}",
            "ip": f"{img.reset_block.ip:#x}"},
        "sev_secret": block(img.sev_secret),
        "sev_hash_table": block(img.sev_hash_table),
        "sev_metadata": None if meta is None else {
            "offset": f"{meta.offset:#x}", "version": meta.version, "zero_size_skipped": meta.skipped,
            "sections": [{"type": s.name, "gpa": f"{s.gpa:#x}", "size": f"{s.size:#x}"}
                         for s in meta.sections]},
        "igvm_metadata": None if igvm is None else {
            "offset": f"{igvm.offset:#x}", "version": igvm.version,
            "sections": [{"id": s.name, "start": f"{s.start:#x}", "size": f"{s.size:#x}"}
                         for s in igvm.sections]},
    }


def render_text(img: OvmfImage) -> str:
    d = describe(img)
    out = [f"{img.name}: OVMF firmware image, {img.size} bytes ({img.size >> 10} KiB), "
           f"mapped at {d['base_gpa']}..0x100000000"]
    out.append(f"footer table: {len(img.footer_entries)} entries")
    for e in img.footer_entries:
        out.append(f"  {e.guid}  {e.name or 'unknown'}  data={e.data.hex()}")
    rb = img.reset_block
    out.append("SEV-ES AP reset block: " + ("none" if rb is None else
               f"{rb.address:#x} (CS base {rb.cs_base:#x}, IP {rb.ip:#x})"))
    for label, b in (("SEV secret block", img.sev_secret), ("SEV hash table", img.sev_hash_table)):
        out.append(f"{label}: " + ("none" if b is None else f"{b.gpa:#x} + {b.size:#x}"))
    meta = img.sev_metadata
    if meta is None:
        out.append("SEV metadata: none")
    else:
        out.append(f"SEV metadata (version {meta.version}, {len(meta.sections)} sections"
                   + (f", {meta.skipped} zero-size skipped" if meta.skipped else "") + "):")
        for s in meta.sections:
            out.append(f"  {s.name:<14} {s.gpa:#010x} + {s.size:#x}")
    igvm = img.igvm_metadata
    if igvm is None:
        out.append("IGVM metadata: none")
    else:
        out.append(f"IGVM metadata (version {igvm.version}):")
        for s in igvm.sections:
            where = "offset" if s.id in (IgvmSectionId.PARAM_MEMORY_MAP, IgvmSectionId.PARAM_VP_COUNT) \
                else "gpa"
            out.append(f"  {s.name:<16} {where} {s.start:#x} + {s.size:#x}")
    return "\n".join(out)


__all__ = ["FooterEntry", "GpaBlock", "IgvmMetadata", "IgvmSection", "IgvmSectionId", "KNOWN_ENTRIES",
           "OvmfImage", "ResetBlock", "SevMetadata", "SevSection", "SevSectionType", "describe",
           "is_ovmf_file", "load", "looks_like_ovmf", "read", "render_text"]
