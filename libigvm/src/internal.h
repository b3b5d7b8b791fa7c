/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Internal interfaces of libigvm (igvm-harness): the parsed-file model shared
 * by the parser (parse.c) and the handle-based C API (api.c).
 */
#ifndef LIBIGVM_INTERNAL_H
#define LIBIGVM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "igvm/igvm.h"

/* Spec sizes of structures the public header does not export. */
#define IGVM_FIXED_HEADER_V1_SIZE 24u
#define IGVM_FIXED_HEADER_V2_SIZE 32u
#define IGVM_NATIVE_VP_CONTEXT_X64_SIZE 232u
#define IGVM_VP_CONTEXT_AARCH64_CCA_SIZE 80u
#define IGVM_VBS_REGISTER_SIZE 32u

enum igvm_arch { IGVM_ARCH_X64 = 0, IGVM_ARCH_AARCH64 = 1 };

/* "igvm-harness own libigvm <version>" (api.c): found in a static link. */
extern const char igvm_harness_libigvm_ident[];

/*
 * One parsed header.  `hdr` is the binary form handed out by
 * igvm_get_header(): the IGVM_VHS_VARIABLE_HEADER prefix followed by the
 * structure re-encoded from its parsed fields (as the reference library does:
 * file offsets become 0, reserved fields and unknown flag bits are dropped),
 * padded to a multiple of 8 bytes.  `data` is the file data returned by
 * igvm_get_header_data() (NULL and 0 when the header has none).
 */
struct igvm_header {
    uint32_t type;
    uint8_t *hdr;
    uint32_t hdr_len;
    uint8_t *data;
    uint32_t data_len;
    /* The reference cannot serialise this header (ERROR_RANGE). */
    int unserialisable;
    /* Parsed fields used by the file-level validation rules. */
    int kind;
    uint32_t mask;
    int has_mask;
    uint64_t gpa;
    uint64_t size;
    uint32_t index;
    uint16_t vp_index;
    uint8_t vtl;
};

struct igvm_section {
    struct igvm_header *headers;
    uint32_t count;
    uint32_t capacity;
};

struct igvm_file {
    struct igvm_section sections[3];
};

/* Header kinds used by the file-level validation. */
enum igvm_kind {
    K_PLATFORM = 1,
    K_GUEST_POLICY,
    K_CCA_POLICY,
    K_RELOCATABLE_REGION,
    K_PAGE_TABLE_RELOCATION,
    K_PAGE_DATA,
    K_PARAMETER_AREA,
    K_PARAMETER_USAGE,
    K_REQUIRED_MEMORY,
    K_SNP_VP_CONTEXT,
    K_NATIVE_VP_CONTEXT,
    K_X64_VBS_VP_CONTEXT,
    K_AARCH64_VBS_VP_CONTEXT,
    K_CCA_VP_CONTEXT,
    K_PARAMETER_INSERT,
    K_ERROR_RANGE,
    K_SNP_ID_BLOCK,
    K_VBS_MEASUREMENT,
};

/* CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), chainable. */
uint32_t igvm_crc32_update(uint32_t crc, const uint8_t *data, size_t len);
uint32_t igvm_crc32(const uint8_t *data, size_t len);

/*
 * Parse and validate; on success *out owns everything it points to.  When
 * `why` is not NULL it receives a static description of the first defect.
 */
IgvmResult igvm_parse(const uint8_t *data, uint32_t len, struct igvm_file **out,
                      const char **why);
void igvm_file_destroy(struct igvm_file *file);

/*
 * The file-level rules over the parsed headers; `why` receives a static
 * description of the first violation (NULL when there is none).
 */
IgvmResult igvm_validate_file(struct igvm_file *file, enum igvm_arch arch, const char **why);

#endif /* LIBIGVM_INTERNAL_H */
