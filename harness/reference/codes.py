"""The three implementations' answers in one vocabulary: IGVMAPI result codes.

* the crate (the reference): ``IgvmResult`` of its C API (igvm/src/c_api.rs),
  which ``translate_error`` derives from its parser's ``Error``; the oracle
  reports both;
* the own C library: the same codes (``igvm-check`` prints them);
* the Python validator: rule ids, each rule's source naming the reference
  parser's error (``harness.igvm.rules``): :func:`expected_codes` turns them
  into the codes the reference gives for that error.

The tables are facts of igvm 0.5's c_api.rs (IgvmResult values,
translate_error) and lib.rs (the ``BinaryHeaderError`` variants, which
become the code of the section the header is in).
"""

from __future__ import annotations

#: IgvmResult (c_api.rs); the CoRIM codes (-29, -30) exist only with the crate's corim feature.
IGVMAPI = {
    0: "IGVMAPI_OK", -1: "IGVMAPI_INVALID_PARAMETER", -2: "IGVMAPI_NO_DATA",
    -3: "IGVMAPI_INVALID_FILE", -4: "IGVMAPI_INVALID_HANDLE", -5: "IGVMAPI_NO_PLATFORM_HEADERS",
    -6: "IGVMAPI_FILE_DATA_SECTION_TOO_LARGE", -7: "IGVMAPI_VARIABLE_HEADER_SECTION_TOO_LARGE",
    -8: "IGVMAPI_TOTAL_FILE_SIZE_TOO_LARGE", -9: "IGVMAPI_INVALID_BINARY_PLATFORM_HEADER",
    -10: "IGVMAPI_INVALID_BINARY_INITIALIZATION_HEADER",
    -11: "IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER",
    -12: "IGVMAPI_MULTIPLE_PLATFORM_HEADERS_WITH_SAME_ISOLATION",
    -13: "IGVMAPI_INVALID_PARAMETER_AREA_INDEX", -14: "IGVMAPI_INVALID_PLATFORM_TYPE",
    -15: "IGVMAPI_NO_FREE_COMPATIBILITY_MASKS", -16: "IGVMAPI_INVALID_FIXED_HEADER",
    -17: "IGVMAPI_INVALID_BINARY_VARIABLE_HEADER_SECTION", -18: "IGVMAPI_INVALID_CHECKSUM",
    -19: "IGVMAPI_MULTIPLE_PAGE_TABLE_RELOCATION_HEADERS",
    -20: "IGVMAPI_RELOCATION_REGIONS_OVERLAP",
    -21: "IGVMAPI_PARAMETER_INSERT_INSIDE_PAGE_TABLE_REGION",
    -22: "IGVMAPI_NO_MATCHING_VP_CONTEXT", -23: "IGVMAPI_PLATFORM_ARCH_UNSUPPORTED",
    -24: "IGVMAPI_INVALID_HEADER_ARCH", -25: "IGVMAPI_UNSUPPORTED_PAGE_SIZE",
    -26: "IGVMAPI_INVALID_FIXED_HEADER_ARCH", -27: "IGVMAPI_MERGE_REVISION",
    -28: "IGVMAPI_INVALID_CCA_POLICY_COMPATIBILITY_MASK",
    -29: "IGVMAPI_CORIM_GENERATION", -30: "IGVMAPI_MEASUREMENT_FAILED",
}
CODE = {name: code for code, name in IGVMAPI.items()}

BINARY_HEADER = {CODE["IGVMAPI_INVALID_BINARY_PLATFORM_HEADER"],
                 CODE["IGVMAPI_INVALID_BINARY_INITIALIZATION_HEADER"],
                 CODE["IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER"]}

#: The crate's Error variants -> IGVMAPI code (c_api.rs translate_error).
ERROR_CODES: dict[str, int] = {
    "NoPlatformHeaders": -5, "FileDataSectionTooLarge": -6, "VariableHeaderSectionTooLarge": -7,
    "TotalFileSizeTooLarge": -8, "InvalidBinaryPlatformHeader": -9,
    "InvalidBinaryInitializationHeader": -10, "InvalidBinaryDirectiveHeader": -11,
    "MultiplePlatformHeadersWithSameIsolation": -12, "InvalidParameterAreaIndex": -13,
    "InvalidPlatformType": -14, "NoFreeCompatibilityMasks": -15, "InvalidFixedHeader": -16,
    "InvalidBinaryVariableHeaderSection": -17, "InvalidChecksum": -18,
    "MultiplePageTableRelocationHeaders": -19, "RelocationRegionsOverlap": -20,
    "ParameterInsertInsidePageTableRegion": -21, "NoMatchingVpContext": -22,
    "PlatformArchUnsupported": -23, "InvalidHeaderArch": -24, "UnsupportedPageSize": -25,
    "InvalidFixedHeaderArch": -26, "MergeRevision": -27, "InvalidCcaPolicyCompatibilityMask": -28,
}
#: BinaryHeaderError variants (lib.rs): the code of the section the header is in.
BINARY_HEADER_ERRORS = frozenset({
    "UnalignedAddress", "UnalignedSize", "InvalidDataSize", "InvalidVariableHeaderSize",
    "InvalidVariableHeaderType", "InvalidPageDataType", "InvalidVpContextPlatformType",
    "InvalidVmsa", "InvalidContext", "InvalidCompatibilityMask", "InvalidVtl",
    "InvalidPlatformType", "InvalidPlatformVersion", "InvalidSharedGpaBoundary",
    "InvalidOnesZeroesMasks", "ReservedNotZero", "NoVbsVpContextRegisters", "RelocationSize",
    "RelocationAlignment", "RelocationAddress", "InvalidPageTableRegionSize",
})


def name(code: int | None) -> str:
    return "none" if code is None else IGVMAPI.get(code, f"code {code}")


def expected_codes(rule_id: str) -> set[int]:
    """IGVMAPI codes the reference gives for a violation of the validator's ``rule_id``
    (the errors its rule source names, harness.igvm.rules)."""
    from harness.igvm.rules import RULES

    source = RULES[rule_id].source
    names = set()
    for part in source.replace("/", " ").replace(",", " ").split("("):
        if ")" in part:
            names.update(w.strip() for w in part.split(")")[0].split())
    codes: set[int] = set()
    for n in names:  # InvalidPlatformType is a variant of both enums: both count
        if n in ERROR_CODES:
            codes.add(ERROR_CODES[n])
        if n in BINARY_HEADER_ERRORS:
            codes |= BINARY_HEADER
    return codes


__all__ = ["BINARY_HEADER", "BINARY_HEADER_ERRORS", "CODE", "ERROR_CODES", "IGVMAPI",
           "expected_codes", "name"]
