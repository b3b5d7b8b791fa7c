"""Every IGVM layout and constant, as data.

Source of truth: the ``igvm_defs`` crate of microsoft/igvm
(``igvm_defs/src/lib.rs``), which is the IGVM specification in code.
All structures are little endian and packed exactly as the ``repr(C)``
Rust structures (every field is naturally aligned there, so no implicit
padding exists; ``IGVM_VHS_VP_CONTEXT`` is the only structure whose size,
20, is not a multiple of 8).

Layouts are :class:`Layout` objects: a precompiled :class:`struct.Struct`
plus field names in file order, so parsing and building share one table.
"""

from __future__ import annotations

import struct
from enum import IntEnum, IntFlag

# --------------------------------------------------------------------------
# Fixed header and general constants
# --------------------------------------------------------------------------

IGVM_MAGIC = 0x4D564749  # b"IGVM" read as a little-endian u32
IGVM_MAGIC_BYTES = b"IGVM"
FORMAT_VERSION_1 = 1
FORMAT_VERSION_2 = 2  # adds architecture and page_size (unstable in igvm_defs)
FORMAT_VERSIONS = (FORMAT_VERSION_1, FORMAT_VERSION_2)

PAGE_SIZE_4K = 0x1000
PAGE_SIZE_2M = 0x200000
VARIABLE_HEADER_ALIGNMENT = 8

#: The GPA at which KVM (and therefore QEMU) places the SEV-ES/SNP VMSA;
#: QEMU's target/i386/sev.c rejects a VMSA VP context at any other GPA.
KVM_VMSA_GPA = 0xFFFFFFFFF000

#: Header type bit meaning "a loader that does not know this type may skip it".
OPTIONAL_BIT = 1 << 31

#: Inclusive header-type ranges of the three variable-header sections.
RANGE_PLATFORM = (0x1, 0x100)
RANGE_INIT = (0x101, 0x200)
RANGE_DIRECTIVE = (0x301, 0x400)


# Enums where a value's *name* is printed or the members are listed
# (describe, validate, reports); the other tables are plain classes of int
# constants: an enum class costs 60-300 us to create, and this module is
# imported at every CLI start-up.


class Architecture(IntEnum):
    """``IgvmArchitecture`` (fixed header v2)."""

    X64 = 0x0
    AARCH64 = 0x1


class Section(IntEnum):
    """Variable-header sections, in the order they must appear.

    Values match ``IgvmHeaderSection`` of the igvm C API.
    """

    PLATFORM = 0
    INITIALIZATION = 1
    DIRECTIVE = 2


class HeaderType(IntEnum):
    """``IgvmVariableHeaderType``: the type of each variable header."""

    INVALID = 0x0
    SUPPORTED_PLATFORM = 0x1
    GUEST_POLICY = 0x101
    RELOCATABLE_REGION = 0x102
    PAGE_TABLE_RELOCATION_REGION = 0x103
    CORIM_DOCUMENT = 0x104  # only with the reference parser's "corim" feature
    CORIM_SIGNATURE = 0x105  # likewise
    CCA_POLICY = 0x106
    PARAMETER_AREA = 0x301
    PAGE_DATA = 0x302
    PARAMETER_INSERT = 0x303
    VP_CONTEXT = 0x304
    REQUIRED_MEMORY = 0x305
    RESERVED_DO_NOT_USE = 0x306  # formerly SHARED_BOUNDARY_GPA
    VP_COUNT_PARAMETER = 0x307
    SRAT = 0x308
    MADT = 0x309
    MMIO_RANGES = 0x30A
    SNP_ID_BLOCK = 0x30B
    MEMORY_MAP = 0x30C
    ERROR_RANGE = 0x30D
    COMMAND_LINE = 0x30E
    SLIT = 0x30F
    PPTT = 0x310
    VBS_MEASUREMENT = 0x311
    DEVICE_TREE = 0x312
    ENVIRONMENT_INFO_PARAMETER = 0x313


def section_of(header_type: int) -> Section | None:
    """The section a header type belongs to by its range, or None."""
    if RANGE_PLATFORM[0] <= header_type <= RANGE_PLATFORM[1]:
        return Section.PLATFORM
    if RANGE_INIT[0] <= header_type <= RANGE_INIT[1]:
        return Section.INITIALIZATION
    if RANGE_DIRECTIVE[0] <= header_type <= RANGE_DIRECTIVE[1]:
        return Section.DIRECTIVE
    return None


#: Directive types whose body is an ``IGVM_VHS_PARAMETER``.
PARAMETER_TYPES = frozenset({
    HeaderType.VP_COUNT_PARAMETER, HeaderType.SRAT, HeaderType.MADT,
    HeaderType.MMIO_RANGES, HeaderType.MEMORY_MAP, HeaderType.COMMAND_LINE,
    HeaderType.SLIT, HeaderType.PPTT, HeaderType.DEVICE_TREE,
    HeaderType.ENVIRONMENT_INFO_PARAMETER,
})


class PlatformType(IntEnum):
    """``IgvmPlatformType`` (u8)."""

    NATIVE = 0x00
    VSM_ISOLATION = 0x01
    SEV_SNP = 0x02
    TDX = 0x03
    SEV = 0x04
    SEV_ES = 0x05
    CCA = 0x06


#: ``IGVM_*_PLATFORM_VERSION``: the only version each platform defines.
PLATFORM_VERSION = {p: 1 for p in PlatformType}

#: Platforms the reference parser allows per architecture
#: (``IgvmFile::validate_platform_headers``).
PLATFORMS_FOR_ARCH = {
    Architecture.X64: frozenset({PlatformType.NATIVE, PlatformType.VSM_ISOLATION,
                                 PlatformType.SEV_SNP, PlatformType.TDX,
                                 PlatformType.SEV, PlatformType.SEV_ES}),
    Architecture.AARCH64: frozenset({PlatformType.VSM_ISOLATION, PlatformType.CCA}),
}

#: Platforms whose ``shared_gpa_boundary`` must be zero.
PLATFORMS_NO_SHARED_GPA_BOUNDARY = frozenset({PlatformType.NATIVE,
                                              PlatformType.VSM_ISOLATION})

#: ``highest_vtl`` values the reference parser accepts.
VALID_HIGHEST_VTLS = (0, 2)
#: ``Vtl`` enum values (relocation headers, VBS registers).
VALID_VTLS = (0, 1, 2)


class PageDataType(IntEnum):
    """``IgvmPageDataType`` (u16)."""

    NORMAL = 0x0
    SECRETS = 0x1
    CPUID_DATA = 0x2
    CPUID_XF = 0x3


class PageDataFlags(IntFlag):
    """``IgvmPageDataFlags`` (u32 bitfield)."""

    IS_2MB_PAGE = 1 << 0
    UNMEASURED = 1 << 1
    SHARED = 1 << 2


PAGE_DATA_FLAGS_RESERVED = 0xFFFFFFFF & ~0x7


class RequiredMemoryFlags:
    """``RequiredMemoryFlags`` (u32 bitfield)."""

    VTL2_PROTECTABLE = 1 << 0


REQUIRED_MEMORY_FLAGS_RESERVED = 0xFFFFFFFE


class RelocatableRegionFlags:
    """``IGVM_VHF_RELOCATABLE_REGION_*`` (u8)."""

    IS_VTL2 = 0x1
    APPLY_PC = 0x2  # legacy name APPLY_RIP
    APPLY_GDTR = 0x4


class MemoryMapEntryType:
    """``MemoryMapEntryType`` (u16)."""

    MEMORY = 0x0
    PLATFORM_RESERVED = 0x1
    PERSISTENT = 0x2
    VTL2_PROTECTABLE = 0x3
    SPECIFIC_PURPOSE = 0x4
    HIDDEN = 0x5


class EnvironmentInfo:
    """``IgvmEnvironmentInfo`` (u32 bitfield)."""

    MEMORY_IS_SHARED = 1 << 0


class SnpPolicyBits:
    """``SnpPolicy`` single-bit fields (bits 0-15 are ABI minor/major)."""

    SMT = 1 << 16
    RESERVED_MUST_BE_ONE = 1 << 17
    MIGRATE_MA = 1 << 18
    DEBUG = 1 << 19
    SINGLE_SOCKET = 1 << 20


class TdxPolicyBits:
    """``TdxPolicy``."""

    DEBUG_ALLOWED = 1 << 0
    SEPT_VE_DISABLE = 1 << 1
    MIGRATABLE = 1 << 2


class CcaHashAlgorithm:
    SHA256 = 0x0
    SHA512 = 0x1
    SHA384 = 0x2


class CcaLfaPolicy:
    LFA_DISALLOW = 0x0
    LFA_ALLOW = 0x1


class VbsDigestAlgorithm:
    INVALID = 0x0
    SHA256 = 0x1


class VbsSigningAlgorithm:
    INVALID = 0x0
    ECDSA_P384 = 0x1


# --------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------


class Layout:
    """A packed little-endian structure: struct format plus field names.

    Immutable by convention; compared by value.  (A plain class: this module
    is imported at every CLI start-up, see harness/record.py for why not a
    dataclass.)"""

    __slots__ = ("name", "fmt", "fields", "st")

    def __init__(self, name: str, fmt: str, fields: tuple[str, ...]) -> None:
        self.name = name
        self.fmt = fmt
        self.fields = fields
        self.st = struct.Struct(fmt)
        n = len(self.st.unpack(bytes(self.st.size)))
        if n != len(fields):  # pragma: no cover - table error
            raise ValueError(f"{name}: {n} values for {len(fields)} fields")

    def __repr__(self) -> str:
        return f"Layout({self.name!r}, {self.fmt!r}, {self.fields!r})"

    def __eq__(self, other):
        if other.__class__ is not Layout:
            return NotImplemented
        return (self.name, self.fmt, self.fields) == (other.name, other.fmt, other.fields)

    def __hash__(self) -> int:
        return hash((self.name, self.fmt, self.fields))

    @property
    def size(self) -> int:
        return self.st.size

    def unpack(self, buf, offset: int = 0) -> dict:
        return dict(zip(self.fields, self.st.unpack_from(buf, offset)))

    def pack(self, **values) -> bytes:
        return self.st.pack(*(values[f] for f in self.fields))


FIXED_HEADER_V1 = Layout("IGVM_FIXED_HEADER", "<6I", (
    "magic", "format_version", "variable_header_offset", "variable_header_size",
    "total_file_size", "checksum"))
FIXED_HEADER_V2 = Layout("IGVM_FIXED_HEADER_V2", "<8I", (
    "magic", "format_version", "variable_header_offset", "variable_header_size",
    "total_file_size", "checksum", "architecture", "page_size"))
#: Byte offset of the checksum field in either fixed header.
CHECKSUM_OFFSET = 20

VARIABLE_HEADER = Layout("IGVM_VHS_VARIABLE_HEADER", "<II", ("type", "length"))

SUPPORTED_PLATFORM = Layout("IGVM_VHS_SUPPORTED_PLATFORM", "<IBBHQ", (
    "compatibility_mask", "highest_vtl", "platform_type", "platform_version",
    "shared_gpa_boundary"))
GUEST_POLICY = Layout("IGVM_VHS_GUEST_POLICY", "<QII", (
    "policy", "compatibility_mask", "reserved"))
RELOCATABLE_REGION = Layout("IGVM_VHS_RELOCATABLE_REGION", "<IHBB5Q", (
    "compatibility_mask", "vp_index", "vtl", "flags", "relocation_alignment",
    "relocation_region_gpa", "relocation_region_size", "minimum_relocation_gpa",
    "maximum_relocation_gpa"))
PAGE_TABLE_RELOCATION = Layout("IGVM_VHS_PAGE_TABLE_RELOCATION", "<IHBB3Q", (
    "compatibility_mask", "vp_index", "vtl", "reserved", "gpa", "size", "used_size"))
CORIM_DATA = Layout("IGVM_VHS_CORIM_DATA", "<4I", (
    "compatibility_mask", "file_offset", "size_bytes", "reserved"))
CCA_POLICY = Layout("IGVM_VHS_CCA_POLICY", "<IIQQBB6s", (
    "compatibility_mask", "reserved", "attributes_required_zeroes",
    "attributes_required_ones", "hash_algorithm", "lfa_policy", "reserved2"))
PARAMETER_AREA = Layout("IGVM_VHS_PARAMETER_AREA", "<QII", (
    "number_of_bytes", "parameter_area_index", "file_offset"))
PAGE_DATA = Layout("IGVM_VHS_PAGE_DATA", "<QIIIHH", (
    "gpa", "compatibility_mask", "file_offset", "flags", "data_type", "reserved"))
PARAMETER_INSERT = Layout("IGVM_VHS_PARAMETER_INSERT", "<QII", (
    "gpa", "compatibility_mask", "parameter_area_index"))
VP_CONTEXT = Layout("IGVM_VHS_VP_CONTEXT", "<QIIHH", (
    "gpa", "compatibility_mask", "file_offset", "vp_index", "reserved"))
REQUIRED_MEMORY = Layout("IGVM_VHS_REQUIRED_MEMORY", "<QIIII", (
    "gpa", "compatibility_mask", "number_of_bytes", "flags", "reserved"))
PARAMETER = Layout("IGVM_VHS_PARAMETER", "<II", ("parameter_area_index", "byte_offset"))
ERROR_RANGE = Layout("IGVM_VHS_ERROR_RANGE", "<QII", (
    "gpa", "compatibility_mask", "size_bytes"))
# IGVM_VHS_SNP_ID_BLOCK with its nested SIGNATURE (r_comp[72], s_comp[72]) and
# PUBLIC_KEY (curve u32, reserved u32, qx[72], qy[72]) flattened.
SNP_ID_BLOCK = Layout("IGVM_VHS_SNP_ID_BLOCK", "<IB3s48s16s16s4I72s72sII72s72s72s72sII72s72s", (
    "compatibility_mask", "author_key_enabled", "reserved", "ld", "family_id",
    "image_id", "version", "guest_svn", "id_key_algorithm", "author_key_algorithm",
    "id_key_signature_r", "id_key_signature_s",
    "id_public_key_curve", "id_public_key_reserved", "id_public_key_qx", "id_public_key_qy",
    "author_key_signature_r", "author_key_signature_s",
    "author_public_key_curve", "author_public_key_reserved", "author_public_key_qx",
    "author_public_key_qy"))
VBS_MEASUREMENT = Layout("IGVM_VHS_VBS_MEASUREMENT", "<8I64s256s512s", (
    "compatibility_mask", "version", "product_id", "module_id", "security_version",
    "policy_flags", "boot_digest_algo", "signing_algo", "boot_measurement_digest",
    "signature", "public_key"))

# Structures written by the loader into parameter areas / read from file data.
MEMORY_MAP_ENTRY = Layout("IGVM_VHS_MEMORY_MAP_ENTRY", "<QQHHI", (
    "starting_gpa_page_number", "number_of_pages", "entry_type", "flags", "reserved"))
MEMORY_RANGE = Layout("IGVM_VHS_MEMORY_RANGE", "<QQ", (
    "starting_gpa_page_number", "number_of_pages"))
VBS_VP_CONTEXT_HEADER = Layout("VbsVpContextHeader", "<I", ("register_count",))
VBS_VP_CONTEXT_REGISTER = Layout("VbsVpContextRegister", "<BI11s16s", (
    "vtl", "register_name", "mbz", "register_value"))

#: Body layout of each known header type.
HEADER_LAYOUTS: dict[HeaderType, Layout] = {
    HeaderType.SUPPORTED_PLATFORM: SUPPORTED_PLATFORM,
    HeaderType.GUEST_POLICY: GUEST_POLICY,
    HeaderType.RELOCATABLE_REGION: RELOCATABLE_REGION,
    HeaderType.PAGE_TABLE_RELOCATION_REGION: PAGE_TABLE_RELOCATION,
    HeaderType.CORIM_DOCUMENT: CORIM_DATA,
    HeaderType.CORIM_SIGNATURE: CORIM_DATA,
    HeaderType.CCA_POLICY: CCA_POLICY,
    HeaderType.PARAMETER_AREA: PARAMETER_AREA,
    HeaderType.PAGE_DATA: PAGE_DATA,
    HeaderType.PARAMETER_INSERT: PARAMETER_INSERT,
    HeaderType.VP_CONTEXT: VP_CONTEXT,
    HeaderType.REQUIRED_MEMORY: REQUIRED_MEMORY,
    HeaderType.SNP_ID_BLOCK: SNP_ID_BLOCK,
    HeaderType.ERROR_RANGE: ERROR_RANGE,
    HeaderType.VBS_MEASUREMENT: VBS_MEASUREMENT,
    **{t: PARAMETER for t in PARAMETER_TYPES},
}

#: Sizes straight from the specification's structures (checked in tests
#: against hand-computed values).
HEADER_SIZES = {t: layout.size for t, layout in HEADER_LAYOUTS.items()}


def align_up(value: int, alignment: int = VARIABLE_HEADER_ALIGNMENT) -> int:
    return (value + alignment - 1) & ~(alignment - 1)
