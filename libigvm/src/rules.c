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

struct vp_ident {
    uint32_t mask;
    uint16_t vp_index;
    uint8_t vtl;
};

struct init_info {
    struct vp_ident *idents;
    size_t ident_count;
    struct igvm_header **pt_regions;
    size_t pt_count;
    /* Section index of the first region that overlaps a region of an
     * earlier header (UINT32_MAX: none); computed before the walk. */
    uint32_t first_overlap;
};

static void init_info_free(struct init_info *ii)
{
    free(ii->idents);
    free(ii->pt_regions);
}

/* One relocation or page table region in one compatibility-mask bit:
 * [first, last] inclusive, and the index of its header in the section. */
struct region {
    uint64_t first, last;
    uint32_t index;
};

static int region_cmp(const void *a, const void *b)
{
    const struct region *x = a, *y = b;
    if (x->first != y->first) {
        return x->first < y->first ? -1 : 1;
    }
    return x->index < y->index ? -1 : x->index > y->index;
}

/* A binary min-heap of (header index, end position) pairs. */
struct active {
    uint32_t index;
    size_t until; /* first sorted position no longer inside the region */
};

static void heap_push(struct active *h, size_t *n, struct active v)
{
    size_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2].index > v.index) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = v;
}

static void heap_pop(struct active *h, size_t *n)
{
    struct active v = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) {
            break;
        }
        if (c + 1 < *n && h[c + 1].index < h[c].index) {
            c++;
        }
        if (h[c].index >= v.index) {
            break;
        }
        h[i] = h[c];
        i = c;
    }
    if (*n) {
        h[i] = v;
    }
}

/*
 * The smallest header index j such that j's region overlaps the region of
 * some header i < j in a shared mask bit; UINT32_MAX if none.  O(n log n):
 * per bit, sort by start; two regions overlap exactly when the later-sorted
 * one starts inside the other.  Sweeping in start order with the regions
 * the sweep is inside in a min-heap by header index, the pairs that end at
 * the current region cost max(smallest active index, its own index).
 * (The reference compares every pair, which took 26 s for 64,000 regions.)
 * Returns IGVMAPI_INVALID_FILE only when memory runs out.
 */
static IgvmResult first_overlap(struct igvm_section *sec, uint32_t *out)
{
    struct region *r = malloc((sec->count ? sec->count : 1) * sizeof(*r));
    struct active *heap = malloc((sec->count ? sec->count : 1) * sizeof(*heap));
    *out = UINT32_MAX;
    if (!r || !heap) {
        free(r);
        free(heap);
        return IGVMAPI_INVALID_FILE;
    }
    for (int bit = 0; bit < 32; bit++) {
        size_t n = 0, hn = 0;
        for (uint32_t i = 0; i < sec->count; i++) {
            struct igvm_header *h = &sec->headers[i];
            if ((h->kind != K_RELOCATABLE_REGION && h->kind != K_PAGE_TABLE_RELOCATION) ||
                !(h->mask & (1u << bit)) || h->size == 0 || h->gpa + h->size - 1 < h->gpa) {
                continue; /* empty or wrapping regions are refused on their own */
            }
            r[n].first = h->gpa;
            r[n].last = h->gpa + h->size - 1;
            r[n].index = i;
            n++;
        }
        qsort(r, n, sizeof(*r), region_cmp);
        for (size_t pos = 0; pos < n; pos++) {
            while (hn && heap[0].until <= pos) {
                heap_pop(heap, &hn);
            }
            if (hn) {
                uint32_t cost = heap[0].index > r[pos].index ? heap[0].index : r[pos].index;
                if (cost < *out) {
                    *out = cost;
                }
            }
            /* later-sorted regions starting at or before this one's last byte */
            size_t lo = pos + 1, hi = n;
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (r[mid].first <= r[pos].last) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            if (lo > pos + 1) {
                heap_push(heap, &hn, (struct active){r[pos].index, lo});
            }
        }
    }
    free(r);
    free(heap);
    return IGVMAPI_OK;
}

static IgvmResult add_regions(struct rules_ctx *ps, struct init_info *ii, uint32_t index,
                              uint64_t start, uint64_t size)
{
    if (size == 0 || start + size - 1 < start) {
        ps->why = "relocation region empty or wraps past 2^64 (the reference panics)";
        return IGVMAPI_INVALID_BINARY_INITIALIZATION_HEADER;
    }
    if (index == ii->first_overlap) {
        ps->why = "relocation regions overlap";
        return IGVMAPI_RELOCATION_REGIONS_OVERLAP;
    }
    return IGVMAPI_OK;
}

static IgvmResult add_ident(struct init_info *ii, struct igvm_header *h)
{
    /* capacity doubles at powers of two: linear total copying */
    size_t c = ii->ident_count;
    if ((c & (c - 1)) == 0) {
        struct vp_ident *n = realloc(ii->idents, (c ? 2 * c : 1) * sizeof(*n));
        if (!n) {
            return IGVMAPI_INVALID_FILE;
        }
        ii->idents = n;
    }
    struct vp_ident *n = ii->idents;
    n[ii->ident_count].mask = h->mask;
    n[ii->ident_count].vp_index = h->vp_index;
    n[ii->ident_count].vtl = h->vtl;
    ii->ident_count++;
    return IGVMAPI_OK;
}

static IgvmResult validate_initialization(struct rules_ctx *ps, struct init_info *ii)
{
    struct igvm_section *plat = &ps->out->sections[IGVM_HEADER_SECTION_PLATFORM];
    struct igvm_section *sec = &ps->out->sections[IGVM_HEADER_SECTION_INITIALIZATION];
    uint32_t page_table_masks = 0;
    IgvmResult rc;

    if ((rc = first_overlap(sec, &ii->first_overlap)) != IGVMAPI_OK) {
        return rc;
    }
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
            if ((rc = add_regions(ps, ii, i, h->gpa, h->size)) != IGVMAPI_OK) {
                return rc;
            }
            if ((rc = add_ident(ii, h)) != IGVMAPI_OK) {
                return rc;
            }
            if (!h->mask) {
                break; /* matches no insert; keeps the insert check at most 32 regions */
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
            if ((rc = add_regions(ps, ii, i, h->gpa, h->size)) != IGVMAPI_OK) {
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

/* Parameter area states in an open-addressing hash table sized for every
 * directive, so each lookup is O(1) (a list made it quadratic). */
struct param_area {
    uint32_t index;
    uint8_t used, inserted;
};

static struct param_area *area_slot(struct param_area *t, size_t cap, uint32_t index)
{
    size_t i = (index * 2654435761u) & (cap - 1);
    while (t[i].used && t[i].index != index) {
        i = (i + 1) & (cap - 1);
    }
    return &t[i];
}

static IgvmResult validate_directives(struct rules_ctx *ps, struct init_info *ii)
{
    struct igvm_section *sec = &ps->out->sections[IGVM_HEADER_SECTION_DIRECTIVE];
    size_t cap = 16;
    while (cap < 2 * (size_t)sec->count) {
        cap *= 2;
    }
    struct param_area *areas = calloc(cap, sizeof(*areas));
    uint32_t covered[256] = {0}; /* VTL -> mask bits that have a VBS VP context */
    IgvmResult rc = IGVMAPI_OK;

    if (!areas) {
        return IGVMAPI_INVALID_FILE;
    }
    for (uint32_t i = 0; i < sec->count && rc == IGVMAPI_OK; i++) {
        struct igvm_header *h = &sec->headers[i];
        struct param_area *area = NULL;

        if (h->kind == K_PARAMETER_AREA || h->kind == K_PARAMETER_USAGE ||
            h->kind == K_PARAMETER_INSERT) {
            area = area_slot(areas, cap, h->index);
        }
        switch (h->kind) {
        case K_PARAMETER_AREA:
            if (area->used) {
                ps->why = "parameter area index declared twice";
                rc = IGVMAPI_INVALID_PARAMETER_AREA_INDEX;
                break;
            }
            area->used = 1;
            area->index = h->index;
            break;
        case K_PARAMETER_USAGE:
            if (!area->used || area->inserted) {
                ps->why = "parameter names an undeclared or already inserted parameter area";
                rc = IGVMAPI_INVALID_PARAMETER_AREA_INDEX;
            }
            break;
        case K_PARAMETER_INSERT:
            if (!area->used || area->inserted) {
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
            /* the kind follows the file's architecture, so the check holds;
             * it covers every ident of VP 0 at this VTL sharing a mask bit */
            covered[h->vtl] |= h->mask;
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
        struct vp_ident *id = &ii->idents[v];
        if (!(id->vp_index == 0 && (id->mask & covered[id->vtl]))) {
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
