/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * igvm.h: C API for parsing IGVM files, source-compatible with the C API of
 * the reference library (microsoft/igvm, igvm_c).  Written for igvm-harness
 * from the IGVM specification; see README.md next to this library.
 *
 * Functions returning int32_t/IgvmHandle return a non-negative value on
 * success and a negative IgvmResult on failure.
 */
#ifndef IGVM_H
#define IGVM_H

#include "igvm_defs.h"

#ifdef __cplusplus
extern "C" {
#endif

#define IGVM_X64_PAGE_SIZE 4096
#define IGVM_X64_LARGE_PAGE_SIZE 2097152
#define IGVM_X64_1GB_PAGE_SIZE 1073741824

/* Result codes; all errors are negative. */
enum IgvmResult {
    IGVMAPI_OK = 0,
    IGVMAPI_INVALID_PARAMETER = -1,
    IGVMAPI_NO_DATA = -2,
    IGVMAPI_INVALID_FILE = -3,
    IGVMAPI_INVALID_HANDLE = -4,
    IGVMAPI_NO_PLATFORM_HEADERS = -5,
    IGVMAPI_FILE_DATA_SECTION_TOO_LARGE = -6,
    IGVMAPI_VARIABLE_HEADER_SECTION_TOO_LARGE = -7,
    IGVMAPI_TOTAL_FILE_SIZE_TOO_LARGE = -8,
    IGVMAPI_INVALID_BINARY_PLATFORM_HEADER = -9,
    IGVMAPI_INVALID_BINARY_INITIALIZATION_HEADER = -10,
    IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER = -11,
    IGVMAPI_MULTIPLE_PLATFORM_HEADERS_WITH_SAME_ISOLATION = -12,
    IGVMAPI_INVALID_PARAMETER_AREA_INDEX = -13,
    IGVMAPI_INVALID_PLATFORM_TYPE = -14,
    IGVMAPI_NO_FREE_COMPATIBILITY_MASKS = -15,
    IGVMAPI_INVALID_FIXED_HEADER = -16,
    IGVMAPI_INVALID_BINARY_VARIABLE_HEADER_SECTION = -17,
    IGVMAPI_INVALID_CHECKSUM = -18,
    IGVMAPI_MULTIPLE_PAGE_TABLE_RELOCATION_HEADERS = -19,
    IGVMAPI_RELOCATION_REGIONS_OVERLAP = -20,
    IGVMAPI_PARAMETER_INSERT_INSIDE_PAGE_TABLE_REGION = -21,
    IGVMAPI_NO_MATCHING_VP_CONTEXT = -22,
    IGVMAPI_PLATFORM_ARCH_UNSUPPORTED = -23,
    IGVMAPI_INVALID_HEADER_ARCH = -24,
    IGVMAPI_UNSUPPORTED_PAGE_SIZE = -25,
    IGVMAPI_INVALID_FIXED_HEADER_ARCH = -26,
    IGVMAPI_MERGE_REVISION = -27,
    IGVMAPI_INVALID_CCA_POLICY_COMPATIBILITY_MASK = -28,
};
typedef int32_t IgvmResult;

/* The three sections of the variable header. */
enum IgvmHeaderSection {
    IGVM_HEADER_SECTION_PLATFORM,
    IGVM_HEADER_SECTION_INITIALIZATION,
    IGVM_HEADER_SECTION_DIRECTIVE,
};
typedef uint32_t IgvmHeaderSection;

typedef int32_t IgvmHandle;

/*
 * Parse and validate len bytes at data.  Returns a handle (> 0) to free with
 * igvm_free(), or a negative IgvmResult naming the first defect found.
 */
IgvmHandle igvm_new_from_binary(const uint8_t *data, uint32_t len);

/* Free a file handle and every buffer obtained through it. */
void igvm_free(IgvmHandle handle);

/* Number of headers in a section, or a negative IgvmResult. */
int32_t igvm_header_count(IgvmHandle handle, IgvmHeaderSection section);

/* IgvmVariableHeaderType of a header, or a negative IgvmResult. */
int32_t igvm_get_header_type(IgvmHandle handle,
                             IgvmHeaderSection section,
                             uint32_t index);

/*
 * A buffer holding the header in binary form: IGVM_VHS_VARIABLE_HEADER
 * followed by the structure, padded to 8 bytes.  Returns a buffer handle or a
 * negative IgvmResult.
 */
IgvmHandle igvm_get_header(IgvmHandle handle,
                           IgvmHeaderSection section,
                           uint32_t index);

/*
 * A buffer holding the file data of a header, or IGVMAPI_NO_DATA when the
 * header has none (for example a page of zeroes), or another IgvmResult.
 */
IgvmHandle igvm_get_header_data(IgvmHandle handle,
                                IgvmHeaderSection section,
                                uint32_t index);

/* Pointer to a buffer's bytes, or NULL for an invalid handle. */
const uint8_t *igvm_get_buffer(IgvmHandle igvm_handle, IgvmHandle buffer_handle);

/* Size of a buffer, or IGVMAPI_INVALID_HANDLE. */
int32_t igvm_get_buffer_size(IgvmHandle igvm_handle, IgvmHandle buffer_handle);

/* Free a buffer; invalid handles are ignored. */
void igvm_free_buffer(IgvmHandle igvm_handle, IgvmHandle buffer_handle);

#ifdef __cplusplus
}
#endif

#endif /* IGVM_H */
