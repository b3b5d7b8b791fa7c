/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * "QEMU usage" test: every function, type, field, enum value and constant
 * that QEMU 10.2's backends/igvm.c takes from <igvm/igvm.h> and
 * <igvm/igvm_defs.h>, used the way QEMU uses them (inventory taken by
 * reading that file; no other QEMU file includes these headers).  It is
 * compiled against the installed-style include path only, with the warning
 * flags QEMU builds with, and then run on a small native IGVM file to check
 * the values QEMU would read.
 */
#include <igvm/igvm.h>
#include <igvm/igvm_defs.h>

#include <stdio.h>
#include <string.h>

#include "filebuilder.h"

static int failures;

#define EXPECT(cond)                                                     \
    do {                                                                 \
        if (!(cond)) {                                                   \
            fprintf(stderr, "qemu-usage: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                  \
        }                                                                \
    } while (0)

/* backends/igvm.c: struct QIGVMHandler table (static initialisers). */
struct handler {
    uint32_t type;
    uint32_t section;
};

static const struct handler handlers[] = {
    { IGVM_VHT_PAGE_DATA, IGVM_HEADER_SECTION_DIRECTIVE },
    { IGVM_VHT_VP_CONTEXT, IGVM_HEADER_SECTION_DIRECTIVE },
    { IGVM_VHT_PARAMETER_AREA, IGVM_HEADER_SECTION_DIRECTIVE },
    { IGVM_VHT_PARAMETER_INSERT, IGVM_HEADER_SECTION_DIRECTIVE },
    { IGVM_VHT_MEMORY_MAP, IGVM_HEADER_SECTION_DIRECTIVE },
    { IGVM_VHT_VP_COUNT_PARAMETER, IGVM_HEADER_SECTION_DIRECTIVE },
    { IGVM_VHT_ENVIRONMENT_INFO_PARAMETER, IGVM_HEADER_SECTION_DIRECTIVE },
    { IGVM_VHT_REQUIRED_MEMORY, IGVM_HEADER_SECTION_DIRECTIVE },
    { IGVM_VHT_SNP_ID_BLOCK, IGVM_HEADER_SECTION_DIRECTIVE },
    { IGVM_VHT_GUEST_POLICY, IGVM_HEADER_SECTION_INITIALIZATION },
};

/* QEMU's qigvm_type_to_cgs_type() switch. */
static int page_type(IgvmPageDataType memory_type)
{
    switch (memory_type) {
    case IGVM_PAGE_DATA_TYPE_NORMAL:
        return 1;
    case IGVM_PAGE_DATA_TYPE_SECRETS:
        return 2;
    case IGVM_PAGE_DATA_TYPE_CPUID_DATA:
    case IGVM_PAGE_DATA_TYPE_CPUID_XF:
        return 3;
    default:
        return -1;
    }
}

/* QEMU's qigvm_page_attrs_equal(): flags compared as a uint32_t. */
static int attrs_equal(const IGVM_VHS_PAGE_DATA *a, const IGVM_VHS_PAGE_DATA *b)
{
    return *(const uint32_t *)&a->flags == *(const uint32_t *)&b->flags &&
           a->data_type == b->data_type && a->compatibility_mask == b->compatibility_mask;
}

/* Fields QEMU reads from structures it never receives in this test. */
static uint64_t touch_other_structures(const uint8_t *header_data)
{
    const IGVM_VHS_VP_CONTEXT *vp = (const IGVM_VHS_VP_CONTEXT *)header_data;
    const IGVM_VHS_PARAMETER_AREA *area = (const IGVM_VHS_PARAMETER_AREA *)header_data;
    const IGVM_VHS_PARAMETER_INSERT *ins = (const IGVM_VHS_PARAMETER_INSERT *)header_data;
    const IGVM_VHS_PARAMETER *param = (const IGVM_VHS_PARAMETER *)header_data;
    const IGVM_VHS_REQUIRED_MEMORY *mem = (const IGVM_VHS_REQUIRED_MEMORY *)header_data;
    const IGVM_VHS_SNP_ID_BLOCK *id = (const IGVM_VHS_SNP_ID_BLOCK *)header_data;
    const IGVM_VHS_GUEST_POLICY *pol = (const IGVM_VHS_GUEST_POLICY *)header_data;
    uint8_t sig[512], key[1028], ld[48], fam[16], img[16];
    IGVM_VHS_MEMORY_MAP_ENTRY mm[2];
    IgvmEnvironmentInfo env;
    uint64_t sum = 0;

    sum += vp->gpa + vp->compatibility_mask + vp->vp_index;
    sum += area->number_of_bytes + area->parameter_area_index;
    sum += ins->compatibility_mask + ins->parameter_area_index + ins->gpa;
    sum += param->parameter_area_index + param->byte_offset;
    sum += mem->compatibility_mask + mem->gpa + mem->number_of_bytes;
    sum += pol->compatibility_mask + pol->policy;
    sum += id->compatibility_mask + id->guest_svn + id->id_key_algorithm +
           id->author_key_algorithm + id->id_public_key.curve + id->author_public_key.curve;
    memcpy(fam, id->family_id, sizeof(id->family_id));
    memcpy(img, id->image_id, sizeof(id->image_id));
    memcpy(ld, id->ld, sizeof(id->ld));
    memcpy(sig, &id->id_key_signature, sizeof(id->id_key_signature));
    memcpy(sig, &id->author_key_signature, sizeof(id->author_key_signature));
    memcpy(&key[4], &id->id_public_key.qx, 72);
    memcpy(&key[76], &id->id_public_key.qy, 72);
    memcpy(&key[4], &id->author_public_key.qx, 72);
    memcpy(&key[76], &id->author_public_key.qy, 72);
    sum += fam[0] + img[0] + ld[0] + sig[0] + key[4];

    memset(mm, 0, sizeof(mm));
    mm[0].starting_gpa_page_number = 1;
    mm[0].number_of_pages = 2;
    mm[0].entry_type = IGVM_MEMORY_MAP_ENTRY_TYPE_MEMORY;
    mm[1].entry_type = IGVM_MEMORY_MAP_ENTRY_TYPE_PLATFORM_RESERVED;
    mm[1].entry_type = IGVM_MEMORY_MAP_ENTRY_TYPE_PERSISTENT;
    sum += mm[0].starting_gpa_page_number + mm[0].number_of_pages + mm[1].entry_type;
    memset(&env, 0, sizeof(env));
    env.memory_is_shared = 1;
    sum += env.memory_is_shared;
    return sum;
}

int main(void)
{
    static uint8_t page[4096];
    struct fb *f = malloc(sizeof(*f));
    uint32_t len;
    IgvmPlatformType platform_type = IGVM_PLATFORM_TYPE_NATIVE;

    /* A native file: platform, guest policy, one data page, one zero page. */
    memset(page, 0xA5, sizeof(page));
    fb_init(f);
    fb_platform(f, 1, 0, IGVM_PLATFORM_TYPE_NATIVE, 1, 0);
    fb_guest_policy(f, 0x30000, 1, 0);
    fb_page(f, 0x1000, 1, 0, IGVM_PAGE_DATA_TYPE_NORMAL, page);
    fb_page(f, 0x2000, 1, 0, IGVM_PAGE_DATA_TYPE_NORMAL, NULL);
    uint8_t *file = fb_finish(f, &len);

    IgvmHandle igvm = igvm_new_from_binary(file, len);
    EXPECT(igvm > 0);

    /* qigvm_supported_platform_compat_mask() */
    int32_t header_count = igvm_header_count(igvm, IGVM_HEADER_SECTION_PLATFORM);
    EXPECT(header_count == 1);
    for (unsigned i = 0; i < (unsigned)header_count; i++) {
        IgvmVariableHeaderType typ =
            igvm_get_header_type(igvm, IGVM_HEADER_SECTION_PLATFORM, i);
        EXPECT(typ == IGVM_VHT_SUPPORTED_PLATFORM);
        IgvmHandle hh = igvm_get_header(igvm, IGVM_HEADER_SECTION_PLATFORM, i);
        EXPECT(hh > 0);
        IGVM_VHS_SUPPORTED_PLATFORM *platform =
            (IGVM_VHS_SUPPORTED_PLATFORM *)(igvm_get_buffer(igvm, hh) +
                                            sizeof(IGVM_VHS_VARIABLE_HEADER));
        EXPECT(platform->platform_type == IGVM_PLATFORM_TYPE_NATIVE);
        EXPECT(platform->platform_type != IGVM_PLATFORM_TYPE_SEV);
        EXPECT(platform->platform_type != IGVM_PLATFORM_TYPE_SEV_ES);
        EXPECT(platform->platform_type != IGVM_PLATFORM_TYPE_SEV_SNP);
        EXPECT(platform->platform_version == 1);
        EXPECT(platform->highest_vtl == 0);
        EXPECT(platform->shared_gpa_boundary == 0);
        EXPECT(platform->compatibility_mask == 1);
        platform_type = platform->platform_type;
        igvm_free_buffer(igvm, hh);
    }
    EXPECT(platform_type == IGVM_PLATFORM_TYPE_NATIVE);

    /* qigvm_process_file(): directives, then initialization headers */
    header_count = igvm_header_count(igvm, IGVM_HEADER_SECTION_DIRECTIVE);
    EXPECT(header_count == 2);
    IGVM_VHS_PAGE_DATA prev;
    memset(&prev, 0, sizeof(prev));
    for (unsigned i = 0; i < (unsigned)header_count; i++) {
        IgvmVariableHeaderType type =
            igvm_get_header_type(igvm, IGVM_HEADER_SECTION_DIRECTIVE, i);
        EXPECT(type == handlers[0].type);
        IgvmHandle hh = igvm_get_header(igvm, handlers[0].section, i);
        EXPECT(hh > 0);
        const uint8_t *header_data = igvm_get_buffer(igvm, hh) +
                                     sizeof(IGVM_VHS_VARIABLE_HEADER);
        const IGVM_VHS_PAGE_DATA *page_data = (const IGVM_VHS_PAGE_DATA *)header_data;
        EXPECT(page_data->gpa == 0x1000u * (i + 1));
        EXPECT(page_data->compatibility_mask == 1);
        EXPECT(!page_data->flags.is_2mb_page && !page_data->flags.unmeasured);
        EXPECT(page_type(page_data->data_type) == 1);
        if (i > 0) {
            EXPECT(attrs_equal(page_data, &prev));
        }
        memcpy(&prev, page_data, sizeof(prev));
        igvm_free_buffer(igvm, hh);

        IgvmHandle dh = igvm_get_header_data(igvm, IGVM_HEADER_SECTION_DIRECTIVE, i);
        if (i == 0) {
            EXPECT(dh > 0);
            uint32_t data_size = igvm_get_buffer_size(igvm, dh);
            const void *data = igvm_get_buffer(igvm, dh);
            EXPECT(data_size == 4096);
            EXPECT(data && memcmp(data, page, 4096) == 0);
            igvm_free_buffer(igvm, dh);
        } else {
            EXPECT(dh == IGVMAPI_NO_DATA);
        }
    }
    header_count = igvm_header_count(igvm, IGVM_HEADER_SECTION_INITIALIZATION);
    EXPECT(header_count == 1);
    IgvmVariableHeaderType type =
        igvm_get_header_type(igvm, IGVM_HEADER_SECTION_INITIALIZATION, 0);
    EXPECT(type == handlers[9].type);
    IgvmHandle hh = igvm_get_header(igvm, handlers[9].section, 0);
    const IGVM_VHS_GUEST_POLICY *guest =
        (const IGVM_VHS_GUEST_POLICY *)(igvm_get_buffer(igvm, hh) +
                                        sizeof(IGVM_VHS_VARIABLE_HEADER));
    EXPECT(guest->policy == 0x30000 && guest->compatibility_mask == 1);
    igvm_free_buffer(igvm, hh);
    {
        /* large enough for the biggest structure read (the SNP ID block) */
        static uint8_t scratch[1024];
        memset(scratch, 1, sizeof(scratch));
        EXPECT(touch_other_structures(scratch) != 0);
    }
    igvm_free(igvm);
    free(file);
    free(f);

    for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++) {
        EXPECT(handlers[i].section <= IGVM_HEADER_SECTION_DIRECTIVE);
    }
    if (failures) {
        fprintf(stderr, "qemu-usage: %d failure(s)\n", failures);
        return 1;
    }
    printf("qemu-usage: ok\n");
    return 0;
}
