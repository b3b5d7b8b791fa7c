/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * File-level IGVM rules, applied after every header parsed on its own
 * (parse.c): platforms, then initialization headers, then directives, in the
 * order and with the error codes of the reference parser's
 * validate_platform_headers, validate_initialization_headers and
 * validate_directive_headers (microsoft/igvm igvm/src/lib.rs).
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct rules_ctx {
    struct igvm_file *out;
    enum igvm_arch arch;
    const char *why;
};

static IgvmResult validate_platforms(struct rules_ctx *ps)
{
    struct igvm_section *sec = &ps->out->sections[IGVM_HEADER_SECTION_PLATFORM];
    int seen[256] = {0};

    for (uint32_t i = 0; i < sec->count; i++) {
        uint8_t type = (uint8_t)sec->headers[i].index;
        switch (type) {
        case IGVM_PLATFORM_TYPE_VSM_ISOLATION:
            break;
        case IGVM_PLATFORM_TYPE_CCA:
            if (ps->arch != IGVM_ARCH_AARCH64) {
                ps->why = "platform not supported on the file's architecture";
                return IGVMAPI_PLATFORM_ARCH_UNSUPPORTED;
            }
            break;
        default: /* NATIVE, SEV, SEV-ES, SEV-SNP, TDX: parsing refused others */
            if (ps->arch != IGVM_ARCH_X64) {
                ps->why = "platform not supported on the file's architecture";
                return IGVMAPI_PLATFORM_ARCH_UNSUPPORTED;
            }
            break;
        }
        if (seen[type]++) {
            ps->why = "two platform headers with the same platform type";
            return IGVMAPI_MULTIPLE_PLATFORM_HEADERS_WITH_SAME_ISOLATION;
        }
    }
    if (sec->count == 0) {
        ps->why = "no platform headers";
        return IGVMAPI_NO_PLATFORM_HEADERS;
    }
    return IGVMAPI_OK;
}

struct range {
    uint64_t first, last;
};

struct vp_ident {
    uint32_t mask;
    uint16_t vp_index;
    uint8_t vtl;
    int live;
};

struct init_info {
    struct range *ranges[32]; /* relocation + page table regions per mask bit */
    size_t range_count[32];
    struct vp_ident *idents;
    size_t ident_count;
    struct igvm_header **pt_regions;
    size_t pt_count;
};

static void init_info_free(struct init_info *ii)
{
    for (int i = 0; i < 32; i++) {
        free(ii->ranges[i]);
    }
    free(ii->idents);
    free(ii->pt_regions);
}

static IgvmResult add_regions(struct rules_ctx *ps, struct init_info *ii, uint32_t mask,
                              uint64_t start, uint64_t size)
{
    if (size == 0 || start + size - 1 < start) {
        ps->why = "relocation region empty or wraps past 2^64 (the reference panics)";
        return IGVMAPI_INVALID_BINARY_INITIALIZATION_HEADER;
    }
    struct range r = {start, start + size - 1};
    for (int bit = 0; bit < 32; bit++) {
        if (!(mask & (1u << bit))) {
            continue;
        }
        for (size_t i = 0; i < ii->range_count[bit]; i++) {
            struct range *e = &ii->ranges[bit][i];
            if (r.first <= e->last && e->first <= r.last) {
                ps->why = "relocation regions overlap";
                return IGVMAPI_RELOCATION_REGIONS_OVERLAP;
            }
        }
        struct range *n = realloc(ii->ranges[bit], (ii->range_count[bit] + 1) * sizeof(*n));
        if (!n) {
            return IGVMAPI_INVALID_FILE;
        }
        ii->ranges[bit] = n;
        n[ii->range_count[bit]++] = r;
    }
    return IGVMAPI_OK;
}

static IgvmResult add_ident(struct init_info *ii, struct igvm_header *h)
{
    struct vp_ident *n = realloc(ii->idents, (ii->ident_count + 1) * sizeof(*n));
    if (!n) {
        return IGVMAPI_INVALID_FILE;
    }
    ii->idents = n;
    n[ii->ident_count].mask = h->mask;
    n[ii->ident_count].vp_index = h->vp_index;
    n[ii->ident_count].vtl = h->vtl;
    n[ii->ident_count].live = 1;
    ii->ident_count++;
    return IGVMAPI_OK;
}

static IgvmResult validate_initialization(struct rules_ctx *ps, struct init_info *ii)
{
    struct igvm_section *plat = &ps->out->sections[IGVM_HEADER_SECTION_PLATFORM];
    struct igvm_section *sec = &ps->out->sections[IGVM_HEADER_SECTION_INITIALIZATION];
    uint32_t page_table_masks = 0;
    IgvmResult rc;

    for (uint32_t i = 0; i < sec->count; i++) {
        struct igvm_header *h = &sec->headers[i];
        switch (h->kind) {
        case K_CCA_POLICY:
            if (ps->arch != IGVM_ARCH_AARCH64) {
                ps->why = "CCA policy in a non-AArch64 file";
                return IGVMAPI_INVALID_HEADER_ARCH;
            }
            for (int bit = 0; bit < 32; bit++) {
                uint32_t m = 1u << bit;
                if (!(h->mask & m)) {
                    continue;
                }
                /* the last platform header declaring this mask decides */
                int is_cca = 0;
                for (uint32_t p = 0; p < plat->count; p++) {
                    if (plat->headers[p].mask == m) {
                        is_cca = plat->headers[p].index == IGVM_PLATFORM_TYPE_CCA;
                    }
                }
                if (!is_cca) {
                    ps->why = "CCA policy mask names a non-CCA platform";
                    return IGVMAPI_INVALID_CCA_POLICY_COMPATIBILITY_MASK;
                }
            }
            break;
        case K_PAGE_TABLE_RELOCATION: {
            if (h->mask & page_table_masks) {
                ps->why = "two page table relocation headers for one compatibility mask";
                return IGVMAPI_MULTIPLE_PAGE_TABLE_RELOCATION_HEADERS;
            }
            page_table_masks |= h->mask;
            if ((rc = add_regions(ps, ii, h->mask, h->gpa, h->size)) != IGVMAPI_OK) {
                return rc;
            }
            if ((rc = add_ident(ii, h)) != IGVMAPI_OK) {
                return rc;
            }
            struct igvm_header **n = realloc(ii->pt_regions, (ii->pt_count + 1) * sizeof(*n));
            if (!n) {
                return IGVMAPI_INVALID_FILE;
            }
            ii->pt_regions = n;
            n[ii->pt_count++] = h;
            break;
        }
        case K_RELOCATABLE_REGION:
            if ((rc = add_regions(ps, ii, h->mask, h->gpa, h->size)) != IGVMAPI_OK) {
                return rc;
            }
            if ((rc = add_ident(ii, h)) != IGVMAPI_OK) {
                return rc;
            }
            break;
        default:
            break;
        }
    }
    return IGVMAPI_OK;
}

/* Parameter area states, kept in a small sorted-free list. */
struct param_area {
    uint32_t index;
    int inserted;
};

static IgvmResult validate_directives(struct rules_ctx *ps, struct init_info *ii)
{
    struct igvm_section *sec = &ps->out->sections[IGVM_HEADER_SECTION_DIRECTIVE];
    struct param_area *areas = NULL;
    size_t area_count = 0;
    IgvmResult rc = IGVMAPI_OK;

    for (uint32_t i = 0; i < sec->count && rc == IGVMAPI_OK; i++) {
        struct igvm_header *h = &sec->headers[i];
        struct param_area *area = NULL;

        if (h->kind == K_PARAMETER_AREA || h->kind == K_PARAMETER_USAGE ||
            h->kind == K_PARAMETER_INSERT) {
            for (size_t a = 0; a < area_count; a++) {
                if (areas[a].index == h->index) {
                    area = &areas[a];
                }
            }
        }
        switch (h->kind) {
        case K_PARAMETER_AREA:
            if (area) {
                ps->why = "parameter area index declared twice";
                rc = IGVMAPI_INVALID_PARAMETER_AREA_INDEX;
                break;
            }
            area = realloc(areas, (area_count + 1) * sizeof(*areas));
            if (!area) {
                rc = IGVMAPI_INVALID_FILE;
                break;
            }
            areas = area;
            areas[area_count].index = h->index;
            areas[area_count].inserted = 0;
            area_count++;
            break;
        case K_PARAMETER_USAGE:
            if (!area || area->inserted) {
                ps->why = "parameter names an undeclared or already inserted parameter area";
                rc = IGVMAPI_INVALID_PARAMETER_AREA_INDEX;
            }
            break;
        case K_PARAMETER_INSERT:
            if (!area || area->inserted) {
                ps->why = "parameter insert names an undeclared or already inserted area";
                rc = IGVMAPI_INVALID_PARAMETER_AREA_INDEX;
                break;
            }
            area->inserted = 1;
            for (size_t r = 0; r < ii->pt_count; r++) {
                struct igvm_header *pt = ii->pt_regions[r];
                if ((pt->mask & h->mask) && h->gpa >= pt->gpa &&
                    h->gpa < pt->gpa + pt->size) {
                    ps->why = "parameter insert inside a page table relocation region";
                    rc = IGVMAPI_PARAMETER_INSERT_INSIDE_PAGE_TABLE_REGION;
                    break;
                }
            }
            break;
        case K_NATIVE_VP_CONTEXT:
            if (ps->arch != IGVM_ARCH_X64) {
                ps->why = "x64 VP context in a non-x64 file";
                rc = IGVMAPI_INVALID_HEADER_ARCH;
            }
            break;
        case K_CCA_VP_CONTEXT:
            if (ps->arch != IGVM_ARCH_AARCH64) {
                ps->why = "CCA VP context in a non-AArch64 file";
                rc = IGVMAPI_INVALID_HEADER_ARCH;
            }
            break;
        case K_X64_VBS_VP_CONTEXT:
        case K_AARCH64_VBS_VP_CONTEXT:
            /* the kind follows the file's architecture, so the check holds */
            for (size_t v = 0; v < ii->ident_count; v++) {
                struct vp_ident *id = &ii->idents[v];
                if ((id->mask & h->mask) && id->vp_index == 0 && id->vtl == h->vtl) {
                    id->live = 0;
                }
            }
            break;
        default:
            break;
        }
    }
    free(areas);
    if (rc != IGVMAPI_OK) {
        return rc;
    }
    for (size_t v = 0; v < ii->ident_count; v++) {
        if (ii->idents[v].live) {
            ps->why = "relocation header names a VP/VTL without a VBS VP context";
            return IGVMAPI_NO_MATCHING_VP_CONTEXT;
        }
    }
    return IGVMAPI_OK;
}

IgvmResult igvm_validate_file(struct igvm_file *file, enum igvm_arch arch, const char **why)
{
    struct rules_ctx ctx = {file, arch, NULL};
    struct init_info ii;
    IgvmResult rc;

    memset(&ii, 0, sizeof(ii));
    rc = validate_platforms(&ctx);
    if (rc == IGVMAPI_OK) {
        rc = validate_initialization(&ctx, &ii);
    }
    if (rc == IGVMAPI_OK) {
        rc = validate_directives(&ctx, &ii);
    }
    init_info_free(&ii);
    *why = ctx.why;
    return rc;
}
