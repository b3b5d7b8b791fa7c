"""Validator rule ids, their sources, and the error/violation types.

Rule ids are stable: the C library (libigvm/ at the top of the checkout) and the
differential tests use the same ids.  Each rule cites the check of the
reference Rust parser (microsoft/igvm ``igvm/src/lib.rs``; function named)
or, for rules marked ``strict``, the sentence of the specification
(``igvm_defs/src/lib.rs``) that the reference parser does not enforce.
Strict rules are only applied by ``validate(..., strict=True)``.

Deliberate differences from the reference parser (also listed in
``validate.py``):

* stricter: ``relocation-alignment-invalid`` also fires for an alignment of
  0 (the reference parser divides by it and panics);
  ``vbs-vp-context-invalid`` covers the reference's ``assert!``s (VP index 0,
  one VTL), which abort rather than return an error.
* looser: VBS register names are not checked against the reference's
  ``X86Register``/``AArch64Register`` tables (``UnsupportedX64Register``).
* the reference parser is compiled without its ``corim`` feature in the
  igvm C library QEMU links, so CoRIM headers (0x104, 0x105) are
  ``unknown-header-type`` here too.
"""

from __future__ import annotations

from harness.errors import HarnessError
from harness.record import Record


class Rule(Record, frozen=True):
    id: str
    summary: str
    source: str
    strict: bool = False


_R = "igvm/src/lib.rs"
_D = "igvm_defs/src/lib.rs"

_RULES = [
    # fixed header (IgvmFile::new_from_binary)
    Rule("file-too-small", "file shorter than the fixed header",
         f"{_R}: IgvmFile::new_from_binary (InvalidFixedHeader)"),
    Rule("bad-magic", "magic is not 'IGVM' (0x4D564749)",
         f"{_R}: IgvmFile::new_from_binary (InvalidFixedHeader)"),
    Rule("unsupported-format-version", "format_version is neither 1 nor 2",
         f"{_R}: IgvmFile::new_from_binary (InvalidFixedHeader)"),
    Rule("bad-architecture", "v2 architecture is neither X64 (0) nor AARCH64 (1)",
         f"{_R}: IgvmFile::new_from_binary (InvalidFixedHeader)"),
    Rule("unsupported-page-size", "v2 page_size is not 4096",
         f"{_R}: IgvmFile::new_from_binary (UnsupportedPageSize)"),
    Rule("total-size-mismatch", "total_file_size differs from the file's length",
         f"{_R}: IgvmFile::new_from_binary (InvalidFixedHeader)"),
    Rule("variable-header-offset-out-of-range", "variable_header_offset not below total_file_size",
         f"{_R}: IgvmFile::new_from_binary (InvalidFixedHeader)"),
    Rule("variable-header-size-out-of-range",
         "variable_header_offset + variable_header_size not below total_file_size "
         "(the file data section may not be empty)",
         f"{_R}: IgvmFile::new_from_binary (InvalidFixedHeader)"),
    Rule("checksum-mismatch", "CRC32 of fixed + variable headers differs from checksum",
         f"{_R}: IgvmFile::new_from_binary (InvalidChecksum)"),
    Rule("variable-header-offset-invalid",
         "variable_header_offset below the fixed header size or not 8-byte aligned",
         f"{_D}: IGVM_FIXED_HEADER::variable_header_offset", strict=True),
    # variable header walk
    Rule("header-truncated", "a variable header runs past the variable header section",
         f"{_R}: read_header (InvalidVariableHeaderSize) / new_from_binary "
         "(InvalidBinaryVariableHeaderSection)"),
    Rule("unknown-header-type", "header type the reference parser does not handle "
         "(including optional-bit and CoRIM types)",
         f"{_R}: new_from_binary_split (InvalidVariableHeaderType) / new_from_binary "
         "(InvalidBinaryVariableHeaderSection)"),
    Rule("section-order", "platform, initialization, directive headers out of order",
         f"{_R}: IgvmFile::new_from_binary (InvalidBinaryVariableHeaderSection)"),
    Rule("header-length-mismatch", "length differs from the structure size of the type",
         f"{_R}: new_from_binary_split match guards (InvalidVariableHeaderType)"),
    Rule("header-padding-nonzero", "padding after a header to 8 bytes is not zero",
         f"{_D}: module docs, 'The padding used to align each variable header to 8 byte "
         "alignments must be zero'", strict=True),
    # platform headers
    Rule("platform-mask-not-single-bit", "supported platform mask has not exactly one bit",
         f"{_R}: IgvmPlatformHeader::validate (InvalidCompatibilityMask)"),
    Rule("platform-vtl-invalid", "highest_vtl is neither 0 nor 2",
         f"{_R}: IgvmPlatformHeader::validate (InvalidVtl)"),
    Rule("platform-type-unknown", "platform_type is not a defined IgvmPlatformType",
         f"{_R}: IgvmPlatformHeader::validate (InvalidPlatformType)"),
    Rule("platform-version-invalid", "platform_version is not the platform's version (1)",
         f"{_R}: IgvmPlatformHeader::validate (InvalidPlatformVersion)"),
    Rule("platform-shared-gpa-boundary", "NATIVE/VSM platform with shared_gpa_boundary != 0",
         f"{_R}: IgvmPlatformHeader::validate (InvalidSharedGpaBoundary)"),
    Rule("platform-arch-mismatch", "platform not supported on the file's architecture",
         f"{_R}: validate_platform_headers (PlatformArchUnsupported)"),
    Rule("platform-duplicate", "two supported platform headers of the same type",
         f"{_R}: validate_platform_headers (MultiplePlatformHeadersWithSameIsolation)"),
    Rule("no-platform", "no supported platform header",
         f"{_R}: validate_platform_headers (NoPlatformHeaders)"),
    Rule("platform-mask-duplicate", "two platforms share a compatibility mask bit",
         f"{_D}: IGVM_VHS_SUPPORTED_PLATFORM::compatibility_mask", strict=True),
    Rule("mask-undeclared", "compatibility mask is 0 or names no declared platform",
         f"{_D}: IGVM_VHS_SUPPORTED_PLATFORM 'must appear ... prior to any other "
         "structures that refer to the compatibility mask'", strict=True),
    # generic per-header checks
    Rule("reserved-nonzero", "a reserved field is not zero",
         f"{_R}: new_from_binary_split (ReservedNotZero)"),
    Rule("gpa-unaligned", "guest physical address not 4 KiB aligned",
         f"{_R}: validate (UnalignedAddress)"),
    Rule("size-unaligned", "size not a multiple of 4 KiB",
         f"{_R}: validate (UnalignedSize / RelocationSize)"),
    Rule("vtl-invalid", "vtl is not 0, 1 or 2",
         f"{_R}: new_from_binary_split Vtl::try_from (InvalidVtl)"),
    Rule("file-data-out-of-range", "file_offset/size outside the file data section",
         f"{_R}: new_from_binary_split extract_file_data (InvalidDataSize)"),
    Rule("header-arch-mismatch", "header type not valid on the file's architecture",
         f"{_R}: validate_initialization_headers / validate_directive_headers (InvalidHeaderArch)"),
    # initialization headers
    Rule("relocation-alignment-invalid", "relocation_alignment not a non-zero multiple of 4 KiB",
         f"{_R}: IgvmInitializationHeader::validate (RelocationAlignment)"),
    Rule("relocation-address-unaligned", "relocation GPA/min/max not aligned to relocation_alignment",
         f"{_R}: IgvmInitializationHeader::validate (RelocationAddress)"),
    Rule("page-table-used-size-exceeds", "page table region used_size above size",
         f"{_R}: IgvmInitializationHeader::validate (InvalidPageTableRegionSize)"),
    Rule("page-table-relocation-duplicate", "two page table relocation headers for one mask",
         f"{_R}: validate_initialization_headers (MultiplePageTableRelocationHeaders)"),
    Rule("relocation-regions-overlap", "relocation / page table regions overlap",
         f"{_R}: validate_initialization_headers (RelocationRegionsOverlap)"),
    Rule("cca-policy-mask", "CCA policy mask names a non-CCA platform",
         f"{_R}: validate_initialization_headers (InvalidCcaPolicyCompatibilityMask)"),
    Rule("cca-policy-ones-zeroes", "CCA policy requires a bit both zero and one",
         f"{_R}: IgvmInitializationHeader::validate (InvalidOnesZeroesMasks)"),
    Rule("no-matching-vp-context", "relocation header names a VP/VTL without a VBS VP context",
         f"{_R}: validate_directive_headers (NoMatchingVpContext)"),
    # directive headers
    Rule("page-data-type-invalid", "page data_type is not NORMAL/SECRETS/CPUID_DATA/CPUID_XF",
         f"{_R}: IgvmDirectiveHeader::validate (InvalidPageDataType)"),
    Rule("page-data-flags-reserved", "reserved page data flag bits set",
         f"{_D}: IgvmPageDataFlags::reserved", strict=True),
    Rule("page-data-2mb-unaligned", "2 MiB page whose GPA is not 2 MiB aligned",
         f"{_D}: IgvmPageDataFlags::is_2mb_page", strict=True),
    Rule("required-memory-flags-reserved", "reserved required-memory flag bits set",
         f"{_D}: RequiredMemoryFlags::reserved", strict=True),
    Rule("vp-context-reserved-nonzero", "IGVM_VHS_VP_CONTEXT.reserved is not zero",
         f"{_D}: IGVM_VHS_VP_CONTEXT::reserved", strict=True),
    Rule("parameter-area-index-reused", "parameter area index declared twice",
         f"{_R}: validate_directive_headers (InvalidParameterAreaIndex)"),
    Rule("parameter-area-undeclared", "parameter or insert names an undeclared area",
         f"{_R}: validate_directive_headers (InvalidParameterAreaIndex)"),
    Rule("parameter-area-inserted", "parameter area used after it was inserted",
         f"{_R}: validate_directive_headers (InvalidParameterAreaIndex)"),
    Rule("parameter-insert-in-page-table", "parameter insert inside a page table region",
         f"{_R}: validate_directive_headers (ParameterInsertInsidePageTableRegion)"),
    Rule("vp-context-platform", "VP context mask is not exactly one platform that has VP contexts",
         f"{_R}: IgvmDirectiveHeader::new_from_binary_split (InvalidVpContextPlatformType)"),
    Rule("vp-context-nonzero-tail", "native/CCA VP context page has non-zero bytes after the context",
         f"{_R}: IgvmDirectiveHeader::new_from_binary_split (InvalidContext)"),
    Rule("vbs-vp-context-invalid", "VBS VP context without registers, mixed VTLs or VP index != 0",
         f"{_R}: IgvmDirectiveHeader::new_from_binary_split (NoVbsVpContextRegisters, asserts)"),
]

RULES: dict[str, Rule] = {r.id: r for r in _RULES}
#: Rules the reference parser enforces (what ``validate`` applies by default).
REFERENCE_RULES = frozenset(r.id for r in _RULES if not r.strict)
STRICT_RULES = frozenset(r.id for r in _RULES if r.strict)


class Violation(Record, frozen=True):
    """One broken rule: stable ``rule`` id, message, where it is."""

    rule: str
    message: str
    header_index: int | None = None
    offset: int | None = None

    def __str__(self) -> str:
        where = []
        if self.header_index is not None:
            where.append(f"header {self.header_index}")
        if self.offset is not None:
            where.append(f"offset 0x{self.offset:x}")
        suffix = f" ({', '.join(where)})" if where else ""
        return f"{self.rule}: {self.message}{suffix}"

    def as_dict(self) -> dict:
        return {"rule": self.rule, "message": self.message,
                "header_index": self.header_index, "offset": self.offset}


class Violations(list):
    """The violations a scan collected: the first ``limit`` of them, and the
    count of the rest.

    Past the limit the scan goes on to the end of the file, counting
    (``not_shown``) but keeping nothing but where the first of those was
    (``first_not_shown``: ``(header_index, offset)``), so that memory is
    bounded and the count exact.
    """

    def __init__(self, items=(), limit: int | None = None) -> None:
        super().__init__(items)
        self.limit = limit
        self.not_shown = 0
        self.first_not_shown: tuple[int | None, int | None] | None = None

    @property
    def truncated(self) -> bool:
        return self.not_shown > 0

    @property
    def total(self) -> int:
        """Every violation the scan found, listed or not."""
        return len(self) + self.not_shown

    def summary(self) -> str:
        """One line: how many, and how many are not listed."""
        if not self.truncated:
            return f"{len(self)} violation(s)"
        idx, off = self.first_not_shown
        where = [f"header {idx}" if idx is not None else None,
                 f"offset 0x{off:x}" if off is not None else None]
        at = ", ".join(w for w in where if w)
        return (f"{self.total} violations: the first {len(self)} are listed, "
                f"{self.not_shown} more violations not shown (the first of them at {at})")

    def as_dict(self) -> dict:
        return {"count": len(self), "limit": self.limit, "truncated": self.truncated,
                "not_shown": self.not_shown, "total": self.total,
                "first_not_shown": None if self.first_not_shown is None else
                {"header_index": self.first_not_shown[0], "offset": self.first_not_shown[1]}}


class IgvmFormatError(HarnessError):
    """An input that is not valid IGVM (exit status 1)."""

    exit_code = 1

    def __init__(self, rule: str, message: str, header_index: int | None = None,
                 offset: int | None = None, source: str | None = None) -> None:
        self.rule = rule
        self.detail = message
        self.header_index = header_index
        self.offset = offset
        self.source = source
        text = f"invalid IGVM: {rule}: {message}"
        if source:
            text = f"{source}: {text}"
        super().__init__(text)

    @classmethod
    def from_violation(cls, v: Violation, source: str | None = None) -> "IgvmFormatError":
        return cls(v.rule, v.message, v.header_index, v.offset, source)
