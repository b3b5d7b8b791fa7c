"""Typed IGVM headers and the in-memory file.

One class per variable-header type of the specification (field names
follow ``igvm_defs``), each a :class:`harness.record.Record`: declared like
a dataclass, without the import cost of :mod:`dataclasses` (``igvm-harness
measure`` loads this module at start-up).  Headers that reference file
data carry the data itself (``bytes`` or a zero-copy ``memoryview`` into
the parsed buffer) instead of a file offset: offsets are a property of one serialisation, and
the builder recomputes them.  ``None`` (or empty) data means "no file data"
(``file_offset`` 0), which for page data is a page of zeros.

Unknown header types are kept as :class:`RawHeader`.
"""

from __future__ import annotations

from harness.igvm.defs import (
    Architecture, HeaderType, PageDataFlags, PageDataType, PlatformType, Section,
    FORMAT_VERSION_1, PAGE_SIZE_4K, section_of, OPTIONAL_BIT,
)
from harness.record import Factory, Record

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: ``typing`` is not imported at start-up
    from typing import ClassVar, Iterator, Sequence, Union

    #: File data of a header: ``bytes``, ``bytearray``, a ``memoryview`` into
    #: the parsed buffer, or None (no file data).
    Data = Union[bytes, bytearray, memoryview, None]


class Header(Record):
    """Base of every typed header; ``TYPE`` and ``SECTION`` identify it."""

    TYPE: ClassVar[int]
    SECTION: ClassVar[Section]

    @property
    def header_type(self) -> int:
        return self.TYPE

    @property
    def section(self) -> Section:
        return self.SECTION

    def as_dict(self) -> dict:
        """Plain values (data as length + hex prefix) for reports and JSON."""
        out: dict = {"type": _type_name(self.header_type)}
        for name in self._fields:
            value = getattr(self, name)
            if isinstance(value, (bytes, bytearray, memoryview)):
                raw = bytes(value)
                out[name] = raw.hex() if len(raw) <= 72 else {
                    "length": len(raw), "all_zero": not any(raw)}
            elif value is None:
                out[name] = None
            else:
                out[name] = int(value)
        return out


def _type_name(t: int) -> str:
    try:
        return HeaderType(t).name
    except ValueError:
        return f"0x{t:X}"


# ----------------------------------------------------------------- platform


class SupportedPlatform(Header):
    compatibility_mask: int
    platform_type: int
    platform_version: int = 1
    highest_vtl: int = 0
    shared_gpa_boundary: int = 0
    TYPE: ClassVar[int] = HeaderType.SUPPORTED_PLATFORM
    SECTION: ClassVar[Section] = Section.PLATFORM


# ----------------------------------------------------------- initialization


class GuestPolicy(Header):
    policy: int
    compatibility_mask: int
    reserved: int = 0
    TYPE: ClassVar[int] = HeaderType.GUEST_POLICY
    SECTION: ClassVar[Section] = Section.INITIALIZATION


class RelocatableRegion(Header):
    compatibility_mask: int
    vp_index: int
    vtl: int
    flags: int
    relocation_alignment: int
    relocation_region_gpa: int
    relocation_region_size: int
    minimum_relocation_gpa: int
    maximum_relocation_gpa: int
    TYPE: ClassVar[int] = HeaderType.RELOCATABLE_REGION
    SECTION: ClassVar[Section] = Section.INITIALIZATION


class PageTableRelocation(Header):
    compatibility_mask: int
    vp_index: int
    vtl: int
    gpa: int
    size: int
    used_size: int
    reserved: int = 0
    TYPE: ClassVar[int] = HeaderType.PAGE_TABLE_RELOCATION_REGION
    SECTION: ClassVar[Section] = Section.INITIALIZATION


class CorimDocument(Header):
    compatibility_mask: int
    data: Data
    reserved: int = 0
    #: written with the type's optional bit (IGVM_VHT_OPTIONAL_BIT) set
    optional: bool = False
    TYPE: ClassVar[int] = HeaderType.CORIM_DOCUMENT
    SECTION: ClassVar[Section] = Section.INITIALIZATION


class CorimSignature(Header):
    compatibility_mask: int
    data: Data
    reserved: int = 0
    #: written with the type's optional bit (IGVM_VHT_OPTIONAL_BIT) set
    optional: bool = False
    TYPE: ClassVar[int] = HeaderType.CORIM_SIGNATURE
    SECTION: ClassVar[Section] = Section.INITIALIZATION


class CcaPolicy(Header):
    compatibility_mask: int
    attributes_required_zeroes: int = 0
    attributes_required_ones: int = 0
    hash_algorithm: int = 0
    lfa_policy: int = 0
    reserved: int = 0
    reserved2: bytes = bytes(6)
    TYPE: ClassVar[int] = HeaderType.CCA_POLICY
    SECTION: ClassVar[Section] = Section.INITIALIZATION


# --------------------------------------------------------------- directives


class ParameterArea(Header):
    number_of_bytes: int
    parameter_area_index: int
    initial_data: Data = None
    TYPE: ClassVar[int] = HeaderType.PARAMETER_AREA
    SECTION: ClassVar[Section] = Section.DIRECTIVE


class PageData(Header):
    gpa: int
    compatibility_mask: int
    flags: int = 0
    data_type: int = PageDataType.NORMAL
    data: Data = None
    reserved: int = 0
    TYPE: ClassVar[int] = HeaderType.PAGE_DATA
    SECTION: ClassVar[Section] = Section.DIRECTIVE

    @property
    def is_zero_page(self) -> bool:
        """True when the header has no file data (loaded as zeros)."""
        return not self.data

    @property
    def size(self) -> int:
        return 0x200000 if self.flags & PageDataFlags.IS_2MB_PAGE else PAGE_SIZE_4K


class ParameterInsert(Header):
    gpa: int
    compatibility_mask: int
    parameter_area_index: int
    TYPE: ClassVar[int] = HeaderType.PARAMETER_INSERT
    SECTION: ClassVar[Section] = Section.DIRECTIVE


class VpContext(Header):
    """``IGVM_VHS_VP_CONTEXT``; ``data`` is the platform's context (a 4 KiB
    VMSA for SEV-ES/SNP, ``IgvmNativeVpContextX64`` for NATIVE/SEV, VBS
    registers for VSM), decoded by :mod:`harness.igvm.vmsa`."""

    gpa: int
    compatibility_mask: int
    vp_index: int = 0
    data: Data = None
    reserved: int = 0
    TYPE: ClassVar[int] = HeaderType.VP_CONTEXT
    SECTION: ClassVar[Section] = Section.DIRECTIVE


class RequiredMemory(Header):
    gpa: int
    compatibility_mask: int
    number_of_bytes: int
    flags: int = 0
    reserved: int = 0
    TYPE: ClassVar[int] = HeaderType.REQUIRED_MEMORY
    SECTION: ClassVar[Section] = Section.DIRECTIVE


class Parameter(Header):
    """``IGVM_VHS_PARAMETER``: where the loader deposits a runtime value.

    Carries no compatibility mask: it applies to whichever platform the
    parameter area it names was declared for."""

    parameter_area_index: int
    byte_offset: int
    SECTION: ClassVar[Section] = Section.DIRECTIVE


def _parameter(name: str, t: HeaderType) -> type:
    return type(name, (Parameter,), {"TYPE": t, "__doc__": f"``{t.name}`` parameter.",
                                     "__module__": __name__})


VpCountParameter = _parameter("VpCountParameter", HeaderType.VP_COUNT_PARAMETER)
Srat = _parameter("Srat", HeaderType.SRAT)
Madt = _parameter("Madt", HeaderType.MADT)
MmioRanges = _parameter("MmioRanges", HeaderType.MMIO_RANGES)
MemoryMap = _parameter("MemoryMap", HeaderType.MEMORY_MAP)
CommandLine = _parameter("CommandLine", HeaderType.COMMAND_LINE)
Slit = _parameter("Slit", HeaderType.SLIT)
Pptt = _parameter("Pptt", HeaderType.PPTT)
DeviceTree = _parameter("DeviceTree", HeaderType.DEVICE_TREE)
EnvironmentInfo = _parameter("EnvironmentInfo", HeaderType.ENVIRONMENT_INFO_PARAMETER)

PARAMETER_CLASSES: dict[int, type] = {c.TYPE: c for c in (
    VpCountParameter, Srat, Madt, MmioRanges, MemoryMap, CommandLine, Slit, Pptt,
    DeviceTree, EnvironmentInfo)}


class SnpIdBlock(Header):
    compatibility_mask: int
    author_key_enabled: int = 0
    reserved: bytes = bytes(3)
    ld: bytes = bytes(48)
    family_id: bytes = bytes(16)
    image_id: bytes = bytes(16)
    version: int = 1
    guest_svn: int = 0
    id_key_algorithm: int = 0
    author_key_algorithm: int = 0
    id_key_signature_r: bytes = bytes(72)
    id_key_signature_s: bytes = bytes(72)
    id_public_key_curve: int = 0
    id_public_key_reserved: int = 0
    id_public_key_qx: bytes = bytes(72)
    id_public_key_qy: bytes = bytes(72)
    author_key_signature_r: bytes = bytes(72)
    author_key_signature_s: bytes = bytes(72)
    author_public_key_curve: int = 0
    author_public_key_reserved: int = 0
    author_public_key_qx: bytes = bytes(72)
    author_public_key_qy: bytes = bytes(72)
    TYPE: ClassVar[int] = HeaderType.SNP_ID_BLOCK
    SECTION: ClassVar[Section] = Section.DIRECTIVE


class ErrorRange(Header):
    gpa: int
    compatibility_mask: int
    size_bytes: int
    TYPE: ClassVar[int] = HeaderType.ERROR_RANGE
    SECTION: ClassVar[Section] = Section.DIRECTIVE


class VbsMeasurement(Header):
    compatibility_mask: int
    version: int = 0
    product_id: int = 0
    module_id: int = 0
    security_version: int = 0
    policy_flags: int = 0
    boot_digest_algo: int = 0
    signing_algo: int = 0
    boot_measurement_digest: bytes = bytes(64)
    signature: bytes = bytes(256)
    public_key: bytes = bytes(512)
    TYPE: ClassVar[int] = HeaderType.VBS_MEASUREMENT
    SECTION: ClassVar[Section] = Section.DIRECTIVE


class RawHeader(Header):
    """A header kept as bytes: unknown type, or written verbatim by a test.

    ``section`` defaults to the section of the type's range (the optional
    bit ignored), else DIRECTIVE."""

    type: int
    body: bytes
    raw_section: Section | None = None

    @property
    def header_type(self) -> int:
        return self.type

    @property
    def section(self) -> Section:  # type: ignore[override]
        if self.raw_section is not None:
            return self.raw_section
        return section_of(self.type & ~OPTIONAL_BIT) or Section.DIRECTIVE

    @property
    def optional(self) -> bool:
        return bool(self.type & OPTIONAL_BIT)

    def as_dict(self) -> dict:
        return {"type": _type_name(self.type), "length": len(self.body),
                "optional": self.optional, "body": bytes(self.body[:64]).hex()}


#: Typed class of each known header type.
HEADER_CLASSES: dict[int, type] = {
    HeaderType.SUPPORTED_PLATFORM: SupportedPlatform,
    HeaderType.GUEST_POLICY: GuestPolicy,
    HeaderType.RELOCATABLE_REGION: RelocatableRegion,
    HeaderType.PAGE_TABLE_RELOCATION_REGION: PageTableRelocation,
    HeaderType.CORIM_DOCUMENT: CorimDocument,
    HeaderType.CORIM_SIGNATURE: CorimSignature,
    HeaderType.CCA_POLICY: CcaPolicy,
    HeaderType.PARAMETER_AREA: ParameterArea,
    HeaderType.PAGE_DATA: PageData,
    HeaderType.PARAMETER_INSERT: ParameterInsert,
    HeaderType.VP_CONTEXT: VpContext,
    HeaderType.REQUIRED_MEMORY: RequiredMemory,
    HeaderType.SNP_ID_BLOCK: SnpIdBlock,
    HeaderType.ERROR_RANGE: ErrorRange,
    HeaderType.VBS_MEASUREMENT: VbsMeasurement,
    **PARAMETER_CLASSES,
}


# --------------------------------------------------------------------- file


def runs(headers: Sequence) -> Iterator[tuple[int, Header, int]]:
    """``(position, header, count)``: ``count`` identical headers from
    ``position`` on as one (:meth:`harness.igvm.lazy.LazyHeaders.runs`);
    every count is 1 for a plain list."""
    lazy = getattr(headers, "runs", None)
    if lazy is not None:
        return lazy()
    return ((i, h, 1) for i, h in enumerate(headers))


def of_class(headers: Sequence, cls: type) -> Iterator:
    """The headers of one class; a lazy sequence skips the others unbuilt."""
    lazy = getattr(headers, "of_type", None)
    if lazy is not None:
        return (h for _, h in lazy(cls.TYPE) if isinstance(h, cls))
    return (h for h in headers if isinstance(h, cls))


class IgvmFile(Record):
    """A whole IGVM file: fixed-header facts plus the three header sequences.

    A file made by the builder holds plain lists.  A parsed file holds
    read-only :class:`~harness.igvm.lazy.LazyHeaders` over the mapped file
    (a few bytes per header; each header object is built when it is read),
    so that a file of a million data-less 32-byte headers costs megabytes,
    not a million objects: read them in a loop rather than ``list()`` them,
    and call :meth:`materialize` before editing one."""

    revision: int = FORMAT_VERSION_1
    architecture: int = Architecture.X64
    page_size: int = PAGE_SIZE_4K
    platforms: Sequence = Factory(list)
    initializations: Sequence = Factory(list)
    directives: Sequence = Factory(list)
    #: Set by the parser: the buffer page data views point into (kept alive
    #: with the model) and each header's byte offset, in file order.  Neither
    #: is compared nor shown (a property of one serialisation).
    buffer: object = None
    offsets: Sequence[int] = Factory(list)

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return (self.revision, self.architecture, self.page_size, self.platforms,
                self.initializations, self.directives) == (
                other.revision, other.architecture, other.page_size, other.platforms,
                other.initializations, other.directives)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"IgvmFile(revision={self.revision!r}, architecture={self.architecture!r}, "
                f"page_size={self.page_size!r}, platforms={self.platforms!r}, "
                f"initializations={self.initializations!r}, directives={self.directives!r})")

    def materialize(self) -> "IgvmFile":
        """Turn the header sequences into plain lists (for editing); returns self.

        Costs one object per header: for files the harness makes or edits,
        not for untrusted ones of unknown size."""
        self.platforms = list(self.platforms)
        self.initializations = list(self.initializations)
        self.directives = list(self.directives)
        return self

    def headers(self) -> Iterator[Header]:
        """Every header in file order (platform, initialization, directive)."""
        yield from self.platforms
        yield from self.initializations
        yield from self.directives

    def header_count(self) -> int:
        return len(self.platforms) + len(self.initializations) + len(self.directives)

    def platform(self, platform_type: int) -> SupportedPlatform | None:
        """The SUPPORTED_PLATFORM header for a platform type, if any."""
        for p in of_class(self.platforms, SupportedPlatform):
            if isinstance(p, SupportedPlatform) and p.platform_type == platform_type:
                return p
        return None

    def mask_for(self, platform_type: int) -> int:
        """Compatibility mask of a platform type (0 when absent)."""
        p = self.platform(platform_type)
        return p.compatibility_mask if p else 0

    def platform_types(self) -> list[PlatformType | int]:
        out = []
        for p in of_class(self.platforms, SupportedPlatform):
            if isinstance(p, SupportedPlatform):
                try:
                    out.append(PlatformType(p.platform_type))
                except ValueError:
                    out.append(p.platform_type)
        return out

    def directives_for(self, mask: int) -> Iterator[Header]:
        """Directives that apply to ``mask``, in file order: those whose
        compatibility mask intersects it, plus those without a mask
        (parameter areas and parameters, which follow the area they name)."""
        for d in self.directives:
            m = getattr(d, "compatibility_mask", None)
            if m is None or m & mask:
                yield d

    def initializations_for(self, mask: int) -> Iterator[Header]:
        for h in self.initializations:
            m = getattr(h, "compatibility_mask", None)
            if m is None or m & mask:
                yield h

    def iter_page_data(self, mask: int | None = None) -> Iterator[PageData]:
        """The page data directives (of ``mask``), one at a time."""
        for d in self.directives:
            if isinstance(d, PageData) and (mask is None or d.compatibility_mask & mask):
                yield d

    def page_data(self, mask: int | None = None) -> list[PageData]:
        """:meth:`iter_page_data` as a list (one object per page: small files)."""
        return list(self.iter_page_data(mask))

    def vp_contexts(self, mask: int | None = None) -> list[VpContext]:
        return [d for d in of_class(self.directives, VpContext)
                if mask is None or d.compatibility_mask & mask]
