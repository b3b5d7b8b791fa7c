/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * IGVM file parser and validator.
 *
 * Written for igvm-harness from the IGVM specification.  The rules, their
 * order and the error code reported for each defect follow the reference
 * parser (microsoft/igvm, IgvmFile::new_from_binary), so that a file is
 * refused here exactly when, and with the same IGVMAPI_* code as, the
 * reference C library refuses it:
 *
 *  1. fixed header: size, magic, version (1, or 2 with a known architecture
 *     and 4 KiB pages), total size, variable header offset and end inside the
 *     file (the file data section must not be empty), CRC-32 checksum over the
 *     fixed header (checksum field as zero) and the variable header section;
 *  2. variable headers, in order: each type must belong to the current or a
 *     later section (platform -> initialization -> directive), its length
 *     must be the exact structure size, reserved fields must be zero and the
 *     per-type rules hold; headers whose compatibility mask is 0 are dropped;
 *  3. file-level rules (rules.c): platforms, then initialization, then
 *     directives.
 *
 * Where the reference panics (division by zero, slice out of range,
 * assertion) this parser reports the section's INVALID_BINARY_* error
 * instead; those cases are listed in README.md.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"


#define PAGE_4K 4096u

struct mask_entry {
    uint32_t mask;
    uint8_t platform_type;
};

struct parser {
    const uint8_t *file;
    uint32_t len;
    enum igvm_arch arch;
    const uint8_t *file_data;
    size_t file_data_len;
    uint32_t file_data_start;
    struct mask_entry *masks;
    size_t mask_count;
    struct igvm_file *out;
    const char *why;
};

/* One header being built: binary form, data and validation fields. */
struct pending {
    uint8_t body[1024];
    uint32_t body_len;
    const uint8_t *data; /* points into the file, or into owned_data */
    uint32_t data_len;
    uint8_t *owned_data;
    struct igvm_header h;
};

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32);
}

static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void wr64(uint8_t *p, uint64_t v)
{
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i]) {
            return 0;
        }
    }
    return 1;
}

static int popcount32(uint32_t v)
{
    int n = 0;
    while (v) {
        v &= v - 1;
        n++;
    }
    return n;
}

#define FAIL(P, msg)      \
    do {                  \
        (P)->why = (msg); \
        return -1;        \
    } while (0)

/*
 * File data referenced by an absolute file offset.  Offset 0 means "no data".
 * The range must lie inside the file data section.
 */
static int extract(struct parser *ps, uint32_t file_offset, uint64_t size,
                   const uint8_t **data, uint32_t *data_len)
{
    *data = NULL;
    *data_len = 0;
    if (file_offset == 0) {
        return 0;
    }
    if (file_offset < ps->file_data_start) {
        FAIL(ps, "file offset before the file data section");
    }
    uint64_t start = file_offset - ps->file_data_start;
    if (start > ps->file_data_len || size > ps->file_data_len - start) {
        FAIL(ps, "file data range beyond the end of the file");
    }
    *data = ps->file_data + start;
    *data_len = (uint32_t)size;
    return 0;
}

/* VP context file data at a file offset: exactly one 4 KiB page. */
static int extract_page(struct parser *ps, uint32_t file_offset, const uint8_t **data)
{
    uint64_t start = (uint32_t)(file_offset - ps->file_data_start); /* wraps as the reference */
    if (file_offset < ps->file_data_start || start > ps->file_data_len ||
        ps->file_data_len - start < PAGE_4K) {
        FAIL(ps, "VP context data beyond the end of the file");
    }
    *data = ps->file_data + start;
    return 0;
}

static int platform_for_mask(struct parser *ps, uint32_t mask, uint8_t *type)
{
    for (size_t i = 0; i < ps->mask_count; i++) {
        if (ps->masks[i].mask == mask) {
            *type = ps->masks[i].platform_type;
            return 1;
        }
    }
    return 0;
}

static int remember_mask(struct parser *ps, uint32_t mask, uint8_t type)
{
    for (size_t i = 0; i < ps->mask_count; i++) {
        if (ps->masks[i].mask == mask) {
            ps->masks[i].platform_type = type; /* later header wins */
            return 0;
        }
    }
    struct mask_entry *m = realloc(ps->masks, (ps->mask_count + 1) * sizeof(*m));
    if (!m) {
        return -1;
    }
    ps->masks = m;
    ps->masks[ps->mask_count].mask = mask;
    ps->masks[ps->mask_count].platform_type = type;
    ps->mask_count++;
    return 0;
}

/* Append a finished header to a section (copies data into owned memory). */
static IgvmResult store(struct parser *ps, int section, struct pending *pd)
{
    struct igvm_section *sec = &ps->out->sections[section];
    uint32_t padded = (pd->body_len + 7u) & ~7u;
    struct igvm_header h = pd->h;

    h.hdr_len = 8 + padded;
    h.hdr = calloc(1, h.hdr_len);
    if (!h.hdr) {
        return IGVMAPI_INVALID_FILE;
    }
    wr32(h.hdr, h.type);
    wr32(h.hdr + 4, pd->body_len);
    memcpy(h.hdr + 8, pd->body, pd->body_len);
    if (pd->data_len) {
        h.data = malloc(pd->data_len);
        if (!h.data) {
            free(h.hdr);
            return IGVMAPI_INVALID_FILE;
        }
        memcpy(h.data, pd->data, pd->data_len);
        h.data_len = pd->data_len;
    }
    if (sec->count == sec->capacity) {
        uint32_t cap = sec->capacity ? sec->capacity * 2 : 16;
        struct igvm_header *n = realloc(sec->headers, cap * sizeof(*n));
        if (!n) {
            free(h.hdr);
            free(h.data);
            return IGVMAPI_INVALID_FILE;
        }
        sec->headers = n;
        sec->capacity = cap;
    }
    sec->headers[sec->count++] = h;
    return IGVMAPI_OK;
}

/* ---- platform headers ------------------------------------------------- */

static int validate_supported_platform(struct parser *ps, const uint8_t *b)
{
    uint32_t mask = rd32(b);
    uint8_t highest_vtl = b[4];
    uint8_t type = b[5];
    uint16_t version = rd16(b + 6);
    uint64_t shared_gpa_boundary = rd64(b + 8);

    if (popcount32(mask) != 1) {
        FAIL(ps, "supported platform: compatibility mask must have exactly one bit set");
    }
    if (highest_vtl != 0 && highest_vtl != 2) {
        FAIL(ps, "supported platform: highest_vtl must be 0 or 2");
    }
    switch (type) {
    case IGVM_PLATFORM_TYPE_NATIVE:
    case IGVM_PLATFORM_TYPE_VSM_ISOLATION:
        if (version != 1) {
            FAIL(ps, "supported platform: invalid platform version");
        }
        if (shared_gpa_boundary != 0) {
            FAIL(ps, "supported platform: shared_gpa_boundary must be 0");
        }
        break;
    case IGVM_PLATFORM_TYPE_SEV_SNP:
    case IGVM_PLATFORM_TYPE_TDX:
    case IGVM_PLATFORM_TYPE_SEV:
    case IGVM_PLATFORM_TYPE_SEV_ES:
    case IGVM_PLATFORM_TYPE_CCA:
        if (version != 1) {
            FAIL(ps, "supported platform: invalid platform version");
        }
        break;
    default:
        FAIL(ps, "supported platform: unknown platform type");
    }
    return 0;
}

static int parse_platform(struct parser *ps, const uint8_t *vh, size_t rem,
                          size_t *used, struct pending *pd)
{
    uint32_t typ = rd32(vh), length = rd32(vh + 4);

    if (typ != IGVM_VHT_SUPPORTED_PLATFORM || length != 16) {
        FAIL(ps, "platform header: unknown type or wrong length");
    }
    if (rem - 8 < 16) {
        FAIL(ps, "platform header: truncated");
    }
    const uint8_t *b = vh + 8;
    if (validate_supported_platform(ps, b) < 0) {
        return -1;
    }
    memcpy(pd->body, b, 16);
    pd->body_len = 16;
    pd->h.type = typ;
    pd->h.kind = K_PLATFORM;
    pd->h.mask = rd32(b);
    pd->h.index = b[5]; /* platform type */
    *used = 8 + 16;
    return 0;
}

/* ---- initialization headers ------------------------------------------- */

static int parse_initialization(struct parser *ps, const uint8_t *vh, size_t rem,
                                size_t *used, struct pending *pd)
{
    uint32_t typ = rd32(vh), length = rd32(vh + 4);
    const uint8_t *b = vh + 8;
    uint8_t *o = pd->body;

    rem -= 8;
    pd->h.type = typ;
    pd->h.has_mask = 1;
    if (typ == IGVM_VHT_GUEST_POLICY && length == 16) {
        if (rem < 16) {
            FAIL(ps, "guest policy: truncated");
        }
        if (rd32(b + 12) != 0) {
            FAIL(ps, "guest policy: reserved field not zero");
        }
        memcpy(o, b, 12);
        wr32(o + 12, 0);
        pd->body_len = 16;
        pd->h.kind = K_GUEST_POLICY;
        pd->h.mask = rd32(b + 8);
    } else if (typ == IGVM_VHT_CCA_POLICY && length == 32) {
        if (rem < 32) {
            FAIL(ps, "CCA policy: truncated");
        }
        if (rd32(b + 4) != 0 || !all_zero(b + 26, 6)) {
            FAIL(ps, "CCA policy: reserved field not zero");
        }
        if (rd64(b + 8) & rd64(b + 16)) {
            FAIL(ps, "CCA policy: required-zeroes and required-ones masks conflict");
        }
        memcpy(o, b, 32);
        pd->body_len = 32;
        pd->h.kind = K_CCA_POLICY;
        pd->h.mask = rd32(b);
    } else if (typ == IGVM_VHT_RELOCATABLE_REGION && length == 48) {
        if (rem < 48) {
            FAIL(ps, "relocatable region: truncated");
        }
        uint16_t vp_index = rd16(b + 4);
        uint8_t vtl = b[6], flags = b[7];
        uint64_t align = rd64(b + 8), gpa = rd64(b + 16), size = rd64(b + 24);
        uint64_t min = rd64(b + 32), max = rd64(b + 40);
        if (vtl > 2) {
            FAIL(ps, "relocatable region: invalid vtl");
        }
        if (size % PAGE_4K) {
            FAIL(ps, "relocatable region: size not 4 KiB aligned");
        }
        if (align % PAGE_4K) {
            FAIL(ps, "relocatable region: alignment not a multiple of 4 KiB");
        }
        if (align == 0) {
            FAIL(ps, "relocatable region: alignment is 0 (the reference panics)");
        }
        if (gpa % align || min % align || max % align) {
            FAIL(ps, "relocatable region: address not aligned to the relocation alignment");
        }
        memcpy(o, b, 48);
        o[7] = (uint8_t)(flags & (IGVM_VHF_RELOCATABLE_REGION_IS_VTL2 |
                                  IGVM_VHF_RELOCATABLE_REGION_APPLY_RIP |
                                  IGVM_VHF_RELOCATABLE_REGION_APPLY_GDTR));
        pd->body_len = 48;
        pd->h.kind = K_RELOCATABLE_REGION;
        pd->h.mask = rd32(b);
        pd->h.gpa = gpa;
        pd->h.size = size;
        pd->h.vp_index = vp_index;
        pd->h.vtl = vtl;
    } else if (typ == IGVM_VHT_PAGE_TABLE_RELOCATION_REGION && length == 32) {
        if (rem < 32) {
            FAIL(ps, "page table relocation: truncated");
        }
        uint16_t vp_index = rd16(b + 4);
        uint8_t vtl = b[6];
        uint64_t gpa = rd64(b + 8), size = rd64(b + 16), used_size = rd64(b + 24);
        if (b[7] != 0) {
            FAIL(ps, "page table relocation: reserved field not zero");
        }
        if (vtl > 2) {
            FAIL(ps, "page table relocation: invalid vtl");
        }
        if (gpa % PAGE_4K) {
            FAIL(ps, "page table relocation: gpa not 4 KiB aligned");
        }
        if (size % PAGE_4K || used_size % PAGE_4K) {
            FAIL(ps, "page table relocation: size not 4 KiB aligned");
        }
        if (used_size > size) {
            FAIL(ps, "page table relocation: used_size larger than size");
        }
        memcpy(o, b, 32);
        pd->body_len = 32;
        pd->h.kind = K_PAGE_TABLE_RELOCATION;
        pd->h.mask = rd32(b);
        pd->h.gpa = gpa;
        pd->h.size = size;
        pd->h.vp_index = vp_index;
        pd->h.vtl = vtl;
    } else {
        FAIL(ps, "initialization header: unknown type or wrong length");
    }
    *used = 8 + pd->body_len;
    return 0;
}

/* ---- directive headers ------------------------------------------------ */

/* Register names (Hyper-V TLFS) accepted in VBS VP contexts. */
enum reg_shape { REG_U64, REG_TABLE, REG_SEGMENT };

static int x64_vbs_register(uint32_t name, enum reg_shape *shape)
{
    static const uint32_t u64_regs[] = {
        0x00020004, 0x00020005, 0x00020006, 0x00020008, 0x00020009, 0x0002000a,
        0x0002000b, 0x0002000c, 0x00020010, 0x00020011, 0x00040000, 0x00040002,
        0x00040003, 0x00080001, 0x00080004, 0x0008000e, 0x00080010, 0x00080011,
        0x00080012, 0x00080013, 0x00080014, 0x00080040, 0x00080041, 0x00080042,
        0x00080043, 0x00080044, 0x00080070, 0x00080071, 0x00080077, 0x00080078,
        0x00080079, 0x0008007a,
    };
    if (name == 0x00070000 || name == 0x00070001) { /* Idtr, Gdtr */
        *shape = REG_TABLE;
        return 1;
    }
    if ((name >= 0x00060000 && name <= 0x00060005) || name == 0x00060007) {
        *shape = REG_SEGMENT; /* Es Cs Ss Ds Fs Gs, Tr */
        return 1;
    }
    for (size_t i = 0; i < sizeof(u64_regs) / sizeof(u64_regs[0]); i++) {
        if (u64_regs[i] == name) {
            *shape = REG_U64;
            return 1;
        }
    }
    return 0;
}

static int aarch64_vbs_register(uint32_t name)
{
    static const uint32_t regs[] = {
        0x00020000, 0x00020001, 0x00020002, 0x00020003, 0x00020004, 0x00020005,
        0x00020006, 0x00020007, 0x00020022, 0x00020023, 0x00040002, 0x00040005,
        0x00040006, 0x00040007, 0x0004000B, 0x0004000C,
    };
    for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++) {
        if (regs[i] == name) {
            return 1;
        }
    }
    return 0;
}

/* VBS register list: parsed, checked, and re-encoded the way the reference does. */
static int parse_vbs_context(struct parser *ps, uint32_t file_offset, uint16_t vp_index,
                             struct pending *pd)
{
    uint64_t start = (uint32_t)(file_offset - ps->file_data_start);
    if (file_offset < ps->file_data_start || start > ps->file_data_len) {
        FAIL(ps, "VBS VP context: file offset outside the file data (the reference panics)");
    }
    const uint8_t *p = ps->file_data + start;
    size_t rem = ps->file_data_len - start;
    if (rem < 4) {
        FAIL(ps, "VBS VP context: truncated register count");
    }
    uint32_t count = rd32(p);
    p += 4;
    rem -= 4;
    if (count > rem / IGVM_VBS_REGISTER_SIZE) {
        FAIL(ps, "VBS VP context: truncated register list");
    }
    int vtl = -1;
    for (uint32_t i = 0; i < count; i++) {
        uint8_t rv = p[i * IGVM_VBS_REGISTER_SIZE];
        if (vtl >= 0 && rv != vtl) {
            FAIL(ps, "VBS VP context: registers name different VTLs (the reference panics)");
        }
        vtl = rv;
    }
    if (vp_index != 0) {
        FAIL(ps, "VBS VP context: vp_index must be 0 (the reference panics)");
    }
    if (vtl < 0) {
        FAIL(ps, "VBS VP context: no registers");
    }
    if (vtl > 2) {
        FAIL(ps, "VBS VP context: invalid vtl");
    }
    size_t out_len = 4 + (size_t)count * IGVM_VBS_REGISTER_SIZE;
    uint8_t *out = calloc(1, out_len);
    if (!out) {
        FAIL(ps, "out of memory");
    }
    wr32(out, count);
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *r = p + (size_t)i * IGVM_VBS_REGISTER_SIZE;
        uint8_t *w = out + 4 + (size_t)i * IGVM_VBS_REGISTER_SIZE;
        uint32_t name = rd32(r + 1);
        enum reg_shape shape = REG_U64;
        int ok = ps->arch == IGVM_ARCH_X64 ? x64_vbs_register(name, &shape)
                                           : aarch64_vbs_register(name);
        if (!ok) {
            free(out);
            FAIL(ps, "VBS VP context: unsupported register");
        }
        w[0] = (uint8_t)vtl;
        wr32(w + 1, name);
        /* mbz (11 bytes) stays zero; the value keeps only what the register holds */
        switch (shape) {
        case REG_U64:
            memcpy(w + 16, r + 16, 8);
            break;
        case REG_TABLE: /* pad[3] (6 bytes) zero, limit, base */
            memcpy(w + 16 + 6, r + 16 + 6, 10);
            break;
        case REG_SEGMENT:
            memcpy(w + 16, r + 16, 16);
            break;
        }
    }
    pd->owned_data = out;
    pd->data = out;
    pd->data_len = (uint32_t)out_len;
    pd->h.vtl = (uint8_t)vtl;
    return 0;
}

static int parse_vp_context(struct parser *ps, const uint8_t *b, size_t rem,
                            struct pending *pd)
{
    uint8_t *o = pd->body;

    if (rem < 24) { /* the structure is consumed with its padding */
        FAIL(ps, "VP context: truncated");
    }
    uint64_t gpa = rd64(b);
    uint32_t mask = rd32(b + 8), file_offset = rd32(b + 12);
    uint16_t vp_index = rd16(b + 16);
    uint8_t platform;

    pd->h.mask = mask;
    pd->h.vp_index = vp_index;
    memset(o, 0, 20);
    wr32(o + 8, mask);
    pd->body_len = 20;
    if (!platform_for_mask(ps, mask, &platform)) {
        FAIL(ps, "VP context: compatibility mask names no single declared platform");
    }
    switch (platform) {
    case IGVM_PLATFORM_TYPE_VSM_ISOLATION:
        if (parse_vbs_context(ps, file_offset, vp_index, pd) < 0) {
            return -1;
        }
        pd->h.kind = ps->arch == IGVM_ARCH_X64 ? K_X64_VBS_VP_CONTEXT
                                               : K_AARCH64_VBS_VP_CONTEXT;
        pd->h.vp_index = 0;
        break;
    case IGVM_PLATFORM_TYPE_SEV_SNP:
    case IGVM_PLATFORM_TYPE_SEV_ES: {
        const uint8_t *page;
        if (extract_page(ps, file_offset, &page) < 0) {
            return -1;
        }
        if (gpa % PAGE_4K) {
            FAIL(ps, "VP context: VMSA gpa not 4 KiB aligned");
        }
        pd->data = page;
        pd->data_len = PAGE_4K;
        pd->h.kind = K_SNP_VP_CONTEXT;
        pd->h.gpa = gpa;
        wr64(o, gpa);
        wr16(o + 16, vp_index);
        break;
    }
    case IGVM_PLATFORM_TYPE_NATIVE:
    case IGVM_PLATFORM_TYPE_SEV:
    case IGVM_PLATFORM_TYPE_CCA: {
        const uint8_t *page;
        size_t ctx_size = platform == IGVM_PLATFORM_TYPE_CCA
                              ? IGVM_VP_CONTEXT_AARCH64_CCA_SIZE
                              : IGVM_NATIVE_VP_CONTEXT_X64_SIZE;
        if (extract_page(ps, file_offset, &page) < 0) {
            return -1;
        }
        if (!all_zero(page + ctx_size, PAGE_4K - ctx_size)) {
            FAIL(ps, "VP context: bytes after the context structure not zero");
        }
        pd->data = page;
        pd->data_len = PAGE_4K;
        pd->h.kind = platform == IGVM_PLATFORM_TYPE_CCA ? K_CCA_VP_CONTEXT
                                                        : K_NATIVE_VP_CONTEXT;
        wr16(o + 16, vp_index);
        break;
    }
    default:
        FAIL(ps, "VP context: unsupported platform type for the compatibility mask");
    }
    return 0;
}

static int parse_directive(struct parser *ps, const uint8_t *vh, size_t rem,
                           size_t *used, struct pending *pd)
{
    uint32_t typ = rd32(vh), length = rd32(vh + 4);
    const uint8_t *b = vh + 8;
    uint8_t *o = pd->body;
    size_t consumed = 0;

    rem -= 8;
    pd->h.type = typ;
#define NEED(n, what)                      \
    do {                                   \
        if (rem < (n)) {                   \
            FAIL(ps, what ": truncated");  \
        }                                  \
        consumed = (n);                    \
    } while (0)

    switch (typ) {
    case IGVM_VHT_PARAMETER_AREA: {
        if (length != 16) {
            break;
        }
        NEED(16, "parameter area");
        uint64_t nbytes = rd64(b);
        uint32_t index = rd32(b + 8), file_offset = rd32(b + 12);
        if (extract(ps, file_offset, nbytes, &pd->data, &pd->data_len) < 0) {
            return -1;
        }
        if (nbytes % PAGE_4K) {
            FAIL(ps, "parameter area: size not 4 KiB aligned");
        }
        memcpy(o, b, 12);
        wr32(o + 12, 0);
        pd->body_len = 16;
        pd->h.kind = K_PARAMETER_AREA;
        pd->h.index = index;
        pd->h.size = nbytes;
        *used = 8 + consumed;
        return 0;
    }
    case IGVM_VHT_PAGE_DATA: {
        if (length != 24) {
            break;
        }
        NEED(24, "page data");
        uint64_t gpa = rd64(b);
        uint32_t file_offset = rd32(b + 12);
        uint16_t data_type = rd16(b + 20);
        if (extract(ps, file_offset, PAGE_4K, &pd->data, &pd->data_len) < 0) {
            return -1;
        }
        if (rd16(b + 22) != 0) {
            FAIL(ps, "page data: reserved field not zero");
        }
        if (gpa % PAGE_4K) {
            FAIL(ps, "page data: gpa not 4 KiB aligned");
        }
        if (data_type > IGVM_PAGE_DATA_TYPE_CPUID_XF) {
            FAIL(ps, "page data: unknown data type");
        }
        memcpy(o, b, 24);
        wr32(o + 12, 0);
        pd->body_len = 24;
        pd->h.kind = K_PAGE_DATA;
        pd->h.has_mask = 1;
        pd->h.mask = rd32(b + 8);
        pd->h.gpa = gpa;
        *used = 8 + consumed;
        return 0;
    }
    case IGVM_VHT_PARAMETER_INSERT: {
        if (length != 16) {
            break;
        }
        NEED(16, "parameter insert");
        uint64_t gpa = rd64(b);
        if (gpa % PAGE_4K) {
            FAIL(ps, "parameter insert: gpa not 4 KiB aligned");
        }
        memcpy(o, b, 16);
        pd->body_len = 16;
        pd->h.kind = K_PARAMETER_INSERT;
        pd->h.has_mask = 1;
        pd->h.mask = rd32(b + 8);
        pd->h.index = rd32(b + 12);
        pd->h.gpa = gpa;
        *used = 8 + consumed;
        return 0;
    }
    case IGVM_VHT_VP_CONTEXT:
        if (length != 20) {
            break;
        }
        if (parse_vp_context(ps, b, rem, pd) < 0) {
            return -1;
        }
        pd->h.has_mask = 1;
        *used = 8 + 24;
        return 0;
    case IGVM_VHT_REQUIRED_MEMORY: {
        if (length != 24) {
            break;
        }
        NEED(24, "required memory");
        uint64_t gpa = rd64(b);
        uint32_t nbytes = rd32(b + 12);
        if (rd32(b + 20) != 0) {
            FAIL(ps, "required memory: reserved field not zero");
        }
        if (gpa % PAGE_4K) {
            FAIL(ps, "required memory: gpa not 4 KiB aligned");
        }
        if (nbytes % PAGE_4K) {
            FAIL(ps, "required memory: size not 4 KiB aligned");
        }
        memcpy(o, b, 16);
        wr32(o + 16, rd32(b + 16) & 1u); /* only vtl2_protectable survives */
        wr32(o + 20, 0);
        pd->body_len = 24;
        pd->h.kind = K_REQUIRED_MEMORY;
        pd->h.has_mask = 1;
        pd->h.mask = rd32(b + 8);
        pd->h.gpa = gpa;
        *used = 8 + consumed;
        return 0;
    }
    case IGVM_VHT_VP_COUNT_PARAMETER:
    case IGVM_VHT_ENVIRONMENT_INFO_PARAMETER:
    case IGVM_VHT_SRAT:
    case IGVM_VHT_MADT:
    case IGVM_VHT_SLIT:
    case IGVM_VHT_PPTT:
    case IGVM_VHT_MMIO_RANGES:
    case IGVM_VHT_MEMORY_MAP:
    case IGVM_VHT_COMMAND_LINE:
    case IGVM_VHT_DEVICE_TREE:
        if (length != 8) {
            break;
        }
        NEED(8, "parameter");
        memcpy(o, b, 8);
        pd->body_len = 8;
        pd->h.kind = K_PARAMETER_USAGE;
        pd->h.index = rd32(b);
        *used = 8 + consumed;
        return 0;
    case IGVM_VHT_SNP_ID_BLOCK:
        if (length != sizeof(IGVM_VHS_SNP_ID_BLOCK)) {
            break;
        }
        NEED(sizeof(IGVM_VHS_SNP_ID_BLOCK), "SNP ID block");
        memcpy(o, b, sizeof(IGVM_VHS_SNP_ID_BLOCK));
        pd->body_len = sizeof(IGVM_VHS_SNP_ID_BLOCK);
        pd->h.kind = K_SNP_ID_BLOCK;
        pd->h.has_mask = 1;
        pd->h.mask = rd32(b);
        *used = 8 + consumed;
        return 0;
    case IGVM_VHT_VBS_MEASUREMENT:
        if (length != sizeof(IGVM_VHS_VBS_MEASUREMENT)) {
            break;
        }
        NEED(sizeof(IGVM_VHS_VBS_MEASUREMENT), "VBS measurement");
        memcpy(o, b, sizeof(IGVM_VHS_VBS_MEASUREMENT));
        pd->body_len = sizeof(IGVM_VHS_VBS_MEASUREMENT);
        pd->h.kind = K_VBS_MEASUREMENT;
        pd->h.has_mask = 1;
        pd->h.mask = rd32(b);
        *used = 8 + consumed;
        return 0;
    case IGVM_VHT_ERROR_RANGE: {
        if (length != 16) {
            break;
        }
        NEED(16, "error range");
        uint64_t gpa = rd64(b);
        if (gpa % PAGE_4K) {
            FAIL(ps, "error range: gpa not 4 KiB aligned");
        }
        memcpy(o, b, 16);
        pd->body_len = 16;
        pd->h.kind = K_ERROR_RANGE;
        pd->h.has_mask = 1;
        pd->h.mask = rd32(b + 8);
        pd->h.unserialisable = 1;
        *used = 8 + consumed;
        return 0;
    }
    default:
        break;
    }
#undef NEED
    FAIL(ps, "directive header: unknown type or wrong length");
}

/* ---- entry point ------------------------------------------------------ */

void igvm_file_destroy(struct igvm_file *file)
{
    if (!file) {
        return;
    }
    for (int s = 0; s < 3; s++) {
        struct igvm_section *sec = &file->sections[s];
        for (uint32_t i = 0; i < sec->count; i++) {
            free(sec->headers[i].hdr);
            free(sec->headers[i].data);
        }
        free(sec->headers);
    }
    free(file);
}

static IgvmResult parse_fixed_header(struct parser *ps, const uint8_t **vh, size_t *vh_len)
{
    const uint8_t *f = ps->file;
    uint32_t len = ps->len;
    uint32_t fixed_size = IGVM_FIXED_HEADER_V1_SIZE;

    if (len < IGVM_FIXED_HEADER_V1_SIZE || rd32(f) != IGVM_MAGIC_VALUE) {
        ps->why = "fixed header: too short or bad magic";
        return IGVMAPI_INVALID_FIXED_HEADER;
    }
    switch (rd32(f + 4)) {
    case IGVM_FORMAT_VERSION_1:
        ps->arch = IGVM_ARCH_X64;
        break;
    case IGVM_FORMAT_VERSION_2:
        if (len < IGVM_FIXED_HEADER_V2_SIZE) {
            ps->why = "fixed header: too short for version 2";
            return IGVMAPI_INVALID_FIXED_HEADER;
        }
        if (rd32(f + 24) > IGVM_ARCH_AARCH64) {
            ps->why = "fixed header: unknown architecture";
            return IGVMAPI_INVALID_FIXED_HEADER;
        }
        ps->arch = (enum igvm_arch)rd32(f + 24);
        if (rd32(f + 28) != PAGE_4K) {
            ps->why = "fixed header: page size other than 4 KiB";
            return IGVMAPI_UNSUPPORTED_PAGE_SIZE;
        }
        fixed_size = IGVM_FIXED_HEADER_V2_SIZE;
        break;
    default:
        ps->why = "fixed header: unknown format version";
        return IGVMAPI_INVALID_FIXED_HEADER;
    }
    uint32_t vh_offset = rd32(f + 8), vh_size = rd32(f + 12);
    if (rd32(f + 16) != len) {
        ps->why = "fixed header: total_file_size differs from the file size";
        return IGVMAPI_INVALID_FIXED_HEADER;
    }
    if (vh_offset >= len) {
        ps->why = "fixed header: variable header offset beyond the file";
        return IGVMAPI_INVALID_FIXED_HEADER;
    }
    uint64_t data_start = (uint64_t)vh_offset + vh_size;
    if (data_start > UINT32_MAX) {
        ps->why = "fixed header: variable header end overflows 32 bits (the reference panics)";
        return IGVMAPI_INVALID_FIXED_HEADER;
    }
    if (data_start >= len) {
        ps->why = "fixed header: variable headers reach the end of the file (no file data)";
        return IGVMAPI_INVALID_FIXED_HEADER;
    }
    ps->file_data_start = (uint32_t)data_start;
    ps->file_data = f + data_start;
    ps->file_data_len = len - data_start;
    *vh = f + vh_offset;
    *vh_len = vh_size;

    uint8_t fixed[IGVM_FIXED_HEADER_V2_SIZE];
    memcpy(fixed, f, fixed_size);
    wr32(fixed + 20, 0);
    uint32_t crc = igvm_crc32_update(igvm_crc32(fixed, fixed_size), *vh, vh_size);
    if (crc != rd32(f + 20)) {
        ps->why = "checksum mismatch";
        return IGVMAPI_INVALID_CHECKSUM;
    }
    return IGVMAPI_OK;
}

static IgvmResult parse_variable_headers(struct parser *ps, const uint8_t *vh, size_t rem)
{
    enum { ST_PLATFORM, ST_INIT, ST_DIRECTIVE } stage = ST_PLATFORM;
    struct pending *pd = malloc(sizeof(*pd));
    IgvmResult rc = IGVMAPI_OK;

    if (!pd) {
        return IGVMAPI_INVALID_FILE;
    }
    while (rem > 0 && rc == IGVMAPI_OK) {
        size_t used = 0;
        int section = 0;

        memset(pd, 0, sizeof(*pd));
        if (rem < 8) {
            ps->why = "variable header section ends inside a type/length prefix";
            rc = IGVMAPI_INVALID_BINARY_VARIABLE_HEADER_SECTION;
            break;
        }
        uint32_t typ = rd32(vh);
        if (typ >= IGVM_VHT_RANGE_PLATFORM_START && typ <= IGVM_VHT_RANGE_PLATFORM_END) {
            if (stage != ST_PLATFORM) {
                ps->why = "platform header after a later section";
                rc = IGVMAPI_INVALID_BINARY_VARIABLE_HEADER_SECTION;
                break;
            }
            if (parse_platform(ps, vh, rem, &used, pd) < 0) {
                rc = IGVMAPI_INVALID_BINARY_PLATFORM_HEADER;
                break;
            }
            if (remember_mask(ps, pd->h.mask, (uint8_t)pd->h.index) < 0) {
                rc = IGVMAPI_INVALID_FILE;
                break;
            }
            section = IGVM_HEADER_SECTION_PLATFORM;
        } else if (typ >= IGVM_VHT_RANGE_INIT_START && typ <= IGVM_VHT_RANGE_INIT_END) {
            if (stage == ST_DIRECTIVE) {
                ps->why = "initialization header after a directive header";
                rc = IGVMAPI_INVALID_BINARY_VARIABLE_HEADER_SECTION;
                break;
            }
            stage = ST_INIT;
            if (parse_initialization(ps, vh, rem, &used, pd) < 0) {
                rc = IGVMAPI_INVALID_BINARY_INITIALIZATION_HEADER;
                break;
            }
            section = IGVM_HEADER_SECTION_INITIALIZATION;
        } else if (typ >= IGVM_VHT_RANGE_DIRECTIVE_START &&
                   typ <= IGVM_VHT_RANGE_DIRECTIVE_END) {
            stage = ST_DIRECTIVE;
            if (parse_directive(ps, vh, rem, &used, pd) < 0) {
                free(pd->owned_data);
                rc = IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER;
                break;
            }
            section = IGVM_HEADER_SECTION_DIRECTIVE;
        } else {
            ps->why = "variable header type outside every section's range";
            rc = IGVMAPI_INVALID_BINARY_VARIABLE_HEADER_SECTION;
            break;
        }
        vh += used;
        rem -= used;
        /* headers whose compatibility mask is 0 apply to no platform: dropped */
        if (!(pd->h.has_mask && pd->h.mask == 0)) {
            rc = store(ps, section, pd);
        }
        free(pd->owned_data);
    }
    free(pd);
    return rc;
}

IgvmResult igvm_parse(const uint8_t *data, uint32_t len, struct igvm_file **out,
                      const char **why)
{
    struct parser ps;
    const uint8_t *vh = NULL;
    size_t vh_len = 0;
    IgvmResult rc;

    memset(&ps, 0, sizeof(ps));
    *out = NULL;
    if (!data && len) {
        rc = IGVMAPI_INVALID_PARAMETER;
        ps.why = "NULL data";
        goto done;
    }
    ps.file = data;
    ps.len = len;
    ps.out = calloc(1, sizeof(*ps.out));
    if (!ps.out) {
        rc = IGVMAPI_INVALID_FILE;
        goto done;
    }
    rc = parse_fixed_header(&ps, &vh, &vh_len);
    if (rc == IGVMAPI_OK) {
        rc = parse_variable_headers(&ps, vh, vh_len);
    }
    if (rc == IGVMAPI_OK) {
        rc = igvm_validate_file(ps.out, ps.arch, &ps.why);
    }
done:
    free(ps.masks);
    if (rc == IGVMAPI_OK) {
        *out = ps.out;
    } else {
        igvm_file_destroy(ps.out);
    }
    if (why) {
        *why = rc == IGVMAPI_OK ? NULL : (ps.why ? ps.why : "out of memory");
    }
    return rc;
}
