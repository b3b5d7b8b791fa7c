/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * igvm-check FILE...: parse each IGVM file with libigvm and print one line
 *
 *     <code> <IGVMAPI_NAME> <file>[: <reason>]
 *
 * where code is 0 (IGVMAPI_OK) when igvm_new_from_binary() accepts the file
 * and its negative IgvmResult otherwise.  With -c the header counts of
 * accepted files follow as "platform=N initialization=N directive=N"; with
 * -w every header and its data of an accepted file are fetched through the
 * API and checked for consistency ("walked=N" or "walk-error=...").
 * Exit status: 0 all accepted, 1 some file refused, 2 usage or I/O error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char *const names[] = {
    "IGVMAPI_OK",
    "IGVMAPI_INVALID_PARAMETER",
    "IGVMAPI_NO_DATA",
    "IGVMAPI_INVALID_FILE",
    "IGVMAPI_INVALID_HANDLE",
    "IGVMAPI_NO_PLATFORM_HEADERS",
    "IGVMAPI_FILE_DATA_SECTION_TOO_LARGE",
    "IGVMAPI_VARIABLE_HEADER_SECTION_TOO_LARGE",
    "IGVMAPI_TOTAL_FILE_SIZE_TOO_LARGE",
    "IGVMAPI_INVALID_BINARY_PLATFORM_HEADER",
    "IGVMAPI_INVALID_BINARY_INITIALIZATION_HEADER",
    "IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER",
    "IGVMAPI_MULTIPLE_PLATFORM_HEADERS_WITH_SAME_ISOLATION",
    "IGVMAPI_INVALID_PARAMETER_AREA_INDEX",
    "IGVMAPI_INVALID_PLATFORM_TYPE",
    "IGVMAPI_NO_FREE_COMPATIBILITY_MASKS",
    "IGVMAPI_INVALID_FIXED_HEADER",
    "IGVMAPI_INVALID_BINARY_VARIABLE_HEADER_SECTION",
    "IGVMAPI_INVALID_CHECKSUM",
    "IGVMAPI_MULTIPLE_PAGE_TABLE_RELOCATION_HEADERS",
    "IGVMAPI_RELOCATION_REGIONS_OVERLAP",
    "IGVMAPI_PARAMETER_INSERT_INSIDE_PAGE_TABLE_REGION",
    "IGVMAPI_NO_MATCHING_VP_CONTEXT",
    "IGVMAPI_PLATFORM_ARCH_UNSUPPORTED",
    "IGVMAPI_INVALID_HEADER_ARCH",
    "IGVMAPI_UNSUPPORTED_PAGE_SIZE",
    "IGVMAPI_INVALID_FIXED_HEADER_ARCH",
    "IGVMAPI_MERGE_REVISION",
    "IGVMAPI_INVALID_CCA_POLICY_COMPATIBILITY_MASK",
};

static const char *name_of(int32_t code)
{
    if (code <= 0 && -code < (int32_t)(sizeof(names) / sizeof(names[0]))) {
        return names[-code];
    }
    return "IGVMAPI_UNKNOWN";
}

static int read_file(const char *path, uint8_t **buf, uint32_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "igvm-check: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = malloc(cap);
    while (b) {
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (n < cap) {
            break;
        }
        if (cap >= UINT32_MAX / 2) {
            fprintf(stderr, "igvm-check: %s: larger than 4 GiB\n", path);
            free(b);
            fclose(f);
            return -1;
        }
        uint8_t *nb = realloc(b, cap * 2);
        if (!nb) {
            free(b);
        }
        b = nb;
        cap *= 2;
    }
    int err = ferror(f);
    fclose(f);
    if (!b || err) {
        fprintf(stderr, "igvm-check: %s: read error\n", path);
        free(b);
        return -1;
    }
    *buf = b;
    *len = (uint32_t)n;
    return 0;
}

/* Fetch every header and its data; return the count, or a negative error. */
static int walk(IgvmHandle h, const char **what)
{
    int n = 0;
    for (uint32_t s = IGVM_HEADER_SECTION_PLATFORM; s <= IGVM_HEADER_SECTION_DIRECTIVE; s++) {
        int32_t count = igvm_header_count(h, s);
        if (count < 0) {
            *what = "header count";
            return -1;
        }
        for (uint32_t i = 0; i < (uint32_t)count; i++, n++) {
            int32_t type = igvm_get_header_type(h, s, i);
            IgvmHandle b = igvm_get_header(h, s, i);
            if (type == IGVM_VHT_ERROR_RANGE && b == IGVMAPI_INVALID_FILE) {
                continue; /* not serialisable, as in the reference */
            }
            const uint8_t *p = igvm_get_buffer(h, b);
            int32_t size = igvm_get_buffer_size(h, b);
            if (b <= 0 || !p || size < 8) {
                *what = "header buffer";
                return -1;
            }
            const IGVM_VHS_VARIABLE_HEADER *vh = (const IGVM_VHS_VARIABLE_HEADER *)p;
            if ((int32_t)vh->typ != type || (uint32_t)size != 8 + ((vh->length + 7u) & ~7u)) {
                *what = "header type or size";
                return -1;
            }
            igvm_free_buffer(h, b);
            IgvmHandle d = igvm_get_header_data(h, s, i);
            if (s == IGVM_HEADER_SECTION_PLATFORM) {
                if (d != IGVMAPI_INVALID_PARAMETER) {
                    *what = "platform data";
                    return -1;
                }
            } else if (d != IGVMAPI_NO_DATA) {
                if (d <= 0 || !igvm_get_buffer(h, d) || igvm_get_buffer_size(h, d) <= 0) {
                    *what = "header data";
                    return -1;
                }
                igvm_free_buffer(h, d);
            }
        }
    }
    return n;
}

int main(int argc, char **argv)
{
    int counts = 0, walking = 0, status = 0, first = 1;

    for (; first < argc && argv[first][0] == '-'; first++) {
        if (strcmp(argv[first], "-c") == 0) {
            counts = 1;
        } else if (strcmp(argv[first], "-w") == 0) {
            walking = 1;
        } else {
            first = argc;
        }
    }
    if (first >= argc) {
        fprintf(stderr, "usage: igvm-check [-c] [-w] FILE...\n");
        return 2;
    }
    for (int i = first; i < argc; i++) {
        uint8_t *buf;
        uint32_t len;
        const char *why = NULL;
        struct igvm_file *file = NULL;

        if (read_file(argv[i], &buf, &len) < 0) {
            return 2;
        }
        /* the public entry point decides; the internal one adds the reason */
        IgvmHandle h = igvm_new_from_binary(buf, len);
        IgvmResult rc = igvm_parse(buf, len, &file, &why);
        int32_t code = h > 0 ? 0 : h;
        if (code != rc) {
            fprintf(stderr, "igvm-check: internal disagreement on %s\n", argv[i]);
            return 2;
        }
        printf("%d %s %s%s%s", code, name_of(code), argv[i], why ? ": " : "",
               why ? why : "");
        if (counts && h > 0) {
            printf(" platform=%d initialization=%d directive=%d",
                   igvm_header_count(h, IGVM_HEADER_SECTION_PLATFORM),
                   igvm_header_count(h, IGVM_HEADER_SECTION_INITIALIZATION),
                   igvm_header_count(h, IGVM_HEADER_SECTION_DIRECTIVE));
        }
        if (walking && h > 0) {
            const char *what = NULL;
            int n = walk(h, &what);
            if (n < 0) {
                printf(" walk-error=%s", what);
                status = 2;
            } else {
                printf(" walked=%d", n);
            }
        }
        printf("\n");
        if (h > 0) {
            igvm_free(h);
        } else if (status == 0) {
            status = 1;
        }
        igvm_file_destroy(file);
        free(buf);
    }
    return status;
}
