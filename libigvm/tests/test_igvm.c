/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * C tests of libigvm.  Files are written byte by byte with filebuilder.h
 * (layouts from the IGVM specification); each expected result is the one
 * the specification's rules, as enforced by the reference parser
 * (microsoft/igvm IgvmFile::new_from_binary and igvm_c's c_api.rs), give.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include "igvm/igvm.h"
#include "internal.h"
#include "filebuilder.h"

static int failures, checks;
static const char *current;

#define EXPECT(cond)                                                              \
    do {                                                                          \
        checks++;                                                                 \
        if (!(cond)) {                                                            \
            fprintf(stderr, "FAIL %s (%s:%d): %s\n", current, __FILE__, __LINE__, \
                    #cond);                                                       \
            failures++;                                                           \
        }                                                                         \
    } while (0)

#define EXPECT_EQ(a, b)                                                          \
    do {                                                                         \
        long long va_ = (long long)(a), vb_ = (long long)(b);                    \
        checks++;                                                                \
        if (va_ != vb_) {                                                        \
            fprintf(stderr, "FAIL %s (%s:%d): %s == %lld, expected %lld\n",      \
                    current, __FILE__, __LINE__, #a, va_, vb_);                  \
            failures++;                                                          \
        }                                                                        \
    } while (0)

/* ---- layout: offsets and sizes from the specification ------------------ */

#define LAYOUT(type, size) _Static_assert(sizeof(type) == (size), #type " size")
#define OFF(type, field, off) \
    _Static_assert(offsetof(type, field) == (off), #type "." #field " offset")

LAYOUT(IGVM_FIXED_HEADER, 24);
OFF(IGVM_FIXED_HEADER, checksum, 20);
LAYOUT(IGVM_VHS_VARIABLE_HEADER, 8);
LAYOUT(IGVM_VHS_SUPPORTED_PLATFORM, 16);
OFF(IGVM_VHS_SUPPORTED_PLATFORM, highest_vtl, 4);
OFF(IGVM_VHS_SUPPORTED_PLATFORM, platform_type, 5);
OFF(IGVM_VHS_SUPPORTED_PLATFORM, platform_version, 6);
OFF(IGVM_VHS_SUPPORTED_PLATFORM, shared_gpa_boundary, 8);
LAYOUT(IGVM_VHS_GUEST_POLICY, 16);
OFF(IGVM_VHS_GUEST_POLICY, compatibility_mask, 8);
LAYOUT(IgvmSnpPolicy, 8);
LAYOUT(IgvmTdxPolicy, 8);
LAYOUT(IGVM_VHS_CCA_POLICY, 32);
OFF(IGVM_VHS_CCA_POLICY, hash_algorithm, 24);
OFF(IGVM_VHS_CCA_POLICY, reserved2, 26);
LAYOUT(IGVM_VHS_RELOCATABLE_REGION, 48);
OFF(IGVM_VHS_RELOCATABLE_REGION, flags, 7);
OFF(IGVM_VHS_RELOCATABLE_REGION, maximum_relocation_gpa, 40);
LAYOUT(IGVM_VHS_PAGE_TABLE_RELOCATION, 32);
OFF(IGVM_VHS_PAGE_TABLE_RELOCATION, gpa, 8);
OFF(IGVM_VHS_PAGE_TABLE_RELOCATION, used_size, 24);
LAYOUT(IGVM_VHS_PARAMETER_AREA, 16);
OFF(IGVM_VHS_PARAMETER_AREA, file_offset, 12);
LAYOUT(IGVM_VHS_PAGE_DATA, 24);
OFF(IGVM_VHS_PAGE_DATA, file_offset, 12);
OFF(IGVM_VHS_PAGE_DATA, flags, 16);
OFF(IGVM_VHS_PAGE_DATA, data_type, 20);
OFF(IGVM_VHS_PAGE_DATA, reserved, 22);
LAYOUT(IgvmPageDataFlags, 4);
LAYOUT(IGVM_VHS_PARAMETER_INSERT, 16);
OFF(IGVM_VHS_PARAMETER_INSERT, parameter_area_index, 12);
LAYOUT(IGVM_VHS_PARAMETER, 8);
LAYOUT(IGVM_VHS_VP_CONTEXT, 20);
OFF(IGVM_VHS_VP_CONTEXT, file_offset, 12);
OFF(IGVM_VHS_VP_CONTEXT, vp_index, 16);
LAYOUT(IgvmVbsVpContextHeader, 4);
LAYOUT(IgvmVbsVpContextRegister, 32);
OFF(IgvmVbsVpContextRegister, register_name, 1);
OFF(IgvmVbsVpContextRegister, register_value, 16);
LAYOUT(IGVM_VHS_REQUIRED_MEMORY, 24);
OFF(IGVM_VHS_REQUIRED_MEMORY, flags, 16);
LAYOUT(IgvmRequiredMemoryFlags, 4);
LAYOUT(IGVM_VHS_MEMORY_RANGE, 16);
LAYOUT(IGVM_VHS_MMIO_RANGES, 32);
LAYOUT(IGVM_VHS_SNP_ID_BLOCK_SIGNATURE, 144);
LAYOUT(IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY, 152);
LAYOUT(IGVM_VHS_SNP_ID_BLOCK, 696);
OFF(IGVM_VHS_SNP_ID_BLOCK, ld, 8);
OFF(IGVM_VHS_SNP_ID_BLOCK, version, 88);
OFF(IGVM_VHS_SNP_ID_BLOCK, id_key_signature, 104);
OFF(IGVM_VHS_SNP_ID_BLOCK, id_public_key, 248);
OFF(IGVM_VHS_SNP_ID_BLOCK, author_key_signature, 400);
OFF(IGVM_VHS_SNP_ID_BLOCK, author_public_key, 544);
LAYOUT(IGVM_VHS_VBS_MEASUREMENT, 864);
LAYOUT(IGVM_VHS_MEMORY_MAP_ENTRY, 24);
OFF(IGVM_VHS_MEMORY_MAP_ENTRY, entry_type, 16);
LAYOUT(IGVM_VHS_ERROR_RANGE, 16);
LAYOUT(IgvmEnvironmentInfo, 4);
_Static_assert(IGVM_VHT_ENVIRONMENT_INFO_PARAMETER == 0x313, "type value");
_Static_assert(IGVM_PLATFORM_TYPE_SEV_ES == 5, "platform value");
_Static_assert(IGVMAPI_INVALID_CCA_POLICY_COMPATIBILITY_MASK == -28, "result value");

/* ---- helpers ------------------------------------------------------------ */

static struct fb F;
static uint8_t PAGE_A[4096], PAGE_Z[4096];

static void begin(const char *name)
{
    current = name;
    fb_init(&F);
}

/* A minimal valid native file; tests append to it. */
static void native_base(void)
{
    fb_platform(&F, 1, 0, IGVM_PLATFORM_TYPE_NATIVE, 1, 0);
}

static IgvmHandle parse_built(void)
{
    uint32_t len;
    if (F.data_len == 0) {
        fb_tail(&F, 8); /* the file data section must not be empty */
    }
    uint8_t *file = fb_finish(&F, &len);
    IgvmHandle h = igvm_new_from_binary(file, len);
    free(file);
    return h;
}

static void expect_result(const char *name, IgvmResult expected)
{
    IgvmHandle h = parse_built();
    current = name;
    if (expected == IGVMAPI_OK) {
        EXPECT(h > 0);
        if (h <= 0) {
            fprintf(stderr, "     got %d\n", h);
        }
        igvm_free(h);
    } else {
        EXPECT_EQ(h, expected);
        if (h > 0) {
            igvm_free(h);
        }
    }
}

/* Parse raw bytes with the checksum recomputed. */
static IgvmHandle parse_sealed(uint8_t *file, uint32_t len)
{
    fb_reseal(file);
    return igvm_new_from_binary(file, len);
}

/* ---- fixed header --------------------------------------------------------- */

static void test_crc32(void)
{
    current = "crc32 check value";
    /* CRC-32/ISO-HDLC check value of "123456789" (the standard catalogue) */
    EXPECT_EQ(fb_crc32(0, (const uint8_t *)"123456789", 9), 0xCBF43926u);
    EXPECT_EQ(igvm_crc32((const uint8_t *)"123456789", 9), 0xCBF43926u);
    EXPECT_EQ(igvm_crc32_update(igvm_crc32((const uint8_t *)"1234", 4),
                                (const uint8_t *)"56789", 5), 0xCBF43926u);
    EXPECT_EQ(igvm_crc32(NULL, 0), 0);
}

static void test_fixed_header(void)
{
    uint32_t len;
    uint8_t *file;

    begin("valid minimal v1 file");
    native_base();
    expect_result("valid minimal v1 file", IGVMAPI_OK);

    begin("short file");
    native_base();
    fb_tail(&F, 8);
    file = fb_finish(&F, &len);
    EXPECT_EQ(igvm_new_from_binary(file, 23), IGVMAPI_INVALID_FIXED_HEADER);
    EXPECT_EQ(igvm_new_from_binary(file, 0), IGVMAPI_INVALID_FIXED_HEADER);

    current = "bad magic";
    file[0] ^= 0x20;
    EXPECT_EQ(parse_sealed(file, len), IGVMAPI_INVALID_FIXED_HEADER);
    file[0] ^= 0x20;

    current = "unknown version 3";
    fb_put32(file + 4, 3);
    EXPECT_EQ(parse_sealed(file, len), IGVMAPI_INVALID_FIXED_HEADER);
    current = "version 0";
    fb_put32(file + 4, 0);
    EXPECT_EQ(parse_sealed(file, len), IGVMAPI_INVALID_FIXED_HEADER);
    fb_put32(file + 4, 1);

    current = "total_file_size too large";
    fb_put32(file + 16, len + 1);
    EXPECT_EQ(parse_sealed(file, len), IGVMAPI_INVALID_FIXED_HEADER);
    current = "total_file_size too small";
    fb_put32(file + 16, len - 1);
    EXPECT_EQ(parse_sealed(file, len), IGVMAPI_INVALID_FIXED_HEADER);
    fb_put32(file + 16, len);

    current = "variable header offset at end of file";
    fb_put32(file + 8, len);
    EXPECT_EQ(parse_sealed(file, len), IGVMAPI_INVALID_FIXED_HEADER);
    fb_put32(file + 8, 24);

    current = "variable header section reaching end of file";
    fb_put32(file + 12, len - 24);
    EXPECT_EQ(parse_sealed(file, len), IGVMAPI_INVALID_FIXED_HEADER);
    current = "variable header end overflowing 32 bits";
    fb_put32(file + 12, 0xFFFFFFF0u);
    EXPECT_EQ(parse_sealed(file, len), IGVMAPI_INVALID_FIXED_HEADER);
    fb_put32(file + 12, 24);

    current = "checksum off by one";
    EXPECT(parse_sealed(file, len) > 0);
    fb_put32(file + 20, fb_get32(file + 20) + 1);
    EXPECT_EQ(igvm_new_from_binary(file, len), IGVMAPI_INVALID_CHECKSUM);
    current = "checksum does not cover file data";
    fb_reseal(file);
    file[len - 1] ^= 0xFF;
    IgvmHandle h = igvm_new_from_binary(file, len);
    EXPECT(h > 0);
    igvm_free(h);
    current = "checksum covers variable headers";
    file[24 + 4] ^= 0x01; /* length of the platform header: 16 -> 17 */
    EXPECT_EQ(igvm_new_from_binary(file, len), IGVMAPI_INVALID_CHECKSUM);
    free(file);

    current = "NULL data";
    EXPECT_EQ(igvm_new_from_binary(NULL, 100), IGVMAPI_INVALID_PARAMETER);
}

static void test_fixed_header_v2(void)
{
    uint32_t len;
    uint8_t *file;

    begin("v2 x64 native file");
    F.version = 2;
    native_base();
    expect_result("v2 x64 native file", IGVMAPI_OK);

    begin("v2 unknown architecture");
    F.version = 2;
    F.arch = 2;
    native_base();
    expect_result("v2 unknown architecture", IGVMAPI_INVALID_FIXED_HEADER);

    begin("v2 64K pages");
    F.version = 2;
    F.page_size = 65536;
    native_base();
    expect_result("v2 64K pages", IGVMAPI_UNSUPPORTED_PAGE_SIZE);

    begin("v2 header truncated to 28 bytes");
    F.version = 2;
    native_base();
    fb_tail(&F, 8);
    file = fb_finish(&F, &len);
    fb_put32(file + 16, 28);
    EXPECT_EQ(igvm_new_from_binary(file, 28), IGVMAPI_INVALID_FIXED_HEADER);
    free(file);

    begin("v2 aarch64 with a native platform");
    F.version = 2;
    F.arch = 1;
    native_base();
    expect_result("v2 aarch64 with a native platform", IGVMAPI_PLATFORM_ARCH_UNSUPPORTED);

    begin("v2 x64 with a CCA platform");
    F.version = 2;
    fb_platform(&F, 1, 0, IGVM_PLATFORM_TYPE_CCA, 1, 0);
    expect_result("v2 x64 with a CCA platform", IGVMAPI_PLATFORM_ARCH_UNSUPPORTED);

    begin("v2 aarch64 CCA and VSM platforms");
    F.version = 2;
    F.arch = 1;
    fb_platform(&F, 1, 0, IGVM_PLATFORM_TYPE_CCA, 1, 0);
    fb_platform(&F, 2, 2, IGVM_PLATFORM_TYPE_VSM_ISOLATION, 1, 0);
    expect_result("v2 aarch64 CCA and VSM platforms", IGVMAPI_OK);

    current = "checksum covers the 32-byte v2 fixed header";
    begin("v2 checksum");
    F.version = 2;
    native_base();
    fb_tail(&F, 8);
    file = fb_finish(&F, &len);
    {
        uint8_t t[32 + 24];
        memcpy(t, file, sizeof(t));
        fb_put32(t + 20, 0);
        EXPECT_EQ(fb_get32(file + 20), fb_crc32(0, t, sizeof(t)));
    }
    IgvmHandle h = igvm_new_from_binary(file, len);
    EXPECT(h > 0);
    igvm_free(h);
    file[24] ^= 0x01; /* the architecture field is covered by the checksum */
    EXPECT_EQ(igvm_new_from_binary(file, len), IGVMAPI_INVALID_CHECKSUM);
    free(file);
}

/* ---- variable header section ---------------------------------------------- */

static void test_sections(void)
{
    uint8_t body[24] = {0};

    begin("trailing bytes shorter than a type/length prefix");
    native_base();
    memset(F.vh + F.vh_len, 0, 4);
    F.vh_len += 4;
    expect_result("trailing 4 bytes", IGVMAPI_INVALID_BINARY_VARIABLE_HEADER_SECTION);

    begin("type 0");
    native_base();
    fb_hdr(&F, 0, body, 8);
    expect_result("type 0", IGVMAPI_INVALID_BINARY_VARIABLE_HEADER_SECTION);

    begin("type 0x201 between the init and directive ranges");
    native_base();
    fb_hdr(&F, 0x201, body, 8);
    expect_result("type 0x201", IGVMAPI_INVALID_BINARY_VARIABLE_HEADER_SECTION);

    begin("type 0x401 beyond the directive range");
    native_base();
    fb_hdr(&F, 0x401, body, 8);
    expect_result("type 0x401", IGVMAPI_INVALID_BINARY_VARIABLE_HEADER_SECTION);

    begin("optional bit set on a known type");
    native_base();
    fb_put32(body + 8, 1);
    fb_hdr(&F, IGVM_VHT_OPTIONAL_BIT | IGVM_VHT_PAGE_DATA, body, 24);
    expect_result("optional bit", IGVMAPI_INVALID_BINARY_VARIABLE_HEADER_SECTION);

    begin("platform header after an initialization header");
    native_base();
    fb_guest_policy(&F, 0, 1, 0);
    fb_platform(&F, 2, 0, IGVM_PLATFORM_TYPE_SEV, 1, 0);
    expect_result("platform after init", IGVMAPI_INVALID_BINARY_VARIABLE_HEADER_SECTION);

    begin("platform header after a directive header");
    native_base();
    fb_page(&F, 0, 1, 0, 0, NULL);
    fb_platform(&F, 2, 0, IGVM_PLATFORM_TYPE_SEV, 1, 0);
    expect_result("platform after directive", IGVMAPI_INVALID_BINARY_VARIABLE_HEADER_SECTION);

    begin("initialization header after a directive header");
    native_base();
    fb_page(&F, 0, 1, 0, 0, NULL);
    fb_guest_policy(&F, 0, 1, 0);
    expect_result("init after directive", IGVMAPI_INVALID_BINARY_VARIABLE_HEADER_SECTION);

    begin("no platform header");
    fb_page(&F, 0, 1, 0, 0, NULL);
    expect_result("no platform header", IGVMAPI_NO_PLATFORM_HEADERS);

    begin("empty variable header section");
    fb_hdr(&F, IGVM_VHT_PAGE_DATA, body, 0); /* replaced below */
    F.vh_len = 0;
    expect_result("empty variable header section", IGVMAPI_NO_PLATFORM_HEADERS);
}

static void test_platform_headers(void)
{
    uint8_t body[24] = {0};

    static const struct {
        const char *name;
        uint32_t mask;
        uint8_t vtl, type;
        uint16_t version;
        uint64_t boundary;
        IgvmResult expected;
    } cases[] = {
        {"native", 1, 0, 0, 1, 0, IGVMAPI_OK},
        {"VSM, highest vtl 2", 1, 2, 1, 1, 0, IGVMAPI_OK},
        {"SEV-SNP with shared gpa boundary", 1, 0, 2, 1, 1ull << 46, IGVMAPI_OK},
        {"TDX", 0x80000000u, 0, 3, 1, 0, IGVMAPI_OK},
        {"SEV", 2, 0, 4, 1, 0, IGVMAPI_OK},
        {"SEV-ES", 4, 0, 5, 1, 0, IGVMAPI_OK},
        {"mask 0", 0, 0, 0, 1, 0, IGVMAPI_INVALID_BINARY_PLATFORM_HEADER},
        {"mask with two bits", 3, 0, 0, 1, 0, IGVMAPI_INVALID_BINARY_PLATFORM_HEADER},
        {"highest vtl 1", 1, 1, 2, 1, 0, IGVMAPI_INVALID_BINARY_PLATFORM_HEADER},
        {"highest vtl 3", 1, 3, 2, 1, 0, IGVMAPI_INVALID_BINARY_PLATFORM_HEADER},
        {"platform type 7", 1, 0, 7, 1, 0, IGVMAPI_INVALID_BINARY_PLATFORM_HEADER},
        {"native version 2", 1, 0, 0, 2, 0, IGVMAPI_INVALID_BINARY_PLATFORM_HEADER},
        {"SEV-SNP version 0", 1, 0, 2, 0, 0, IGVMAPI_INVALID_BINARY_PLATFORM_HEADER},
        {"SEV-ES version 2", 1, 0, 5, 2, 0, IGVMAPI_INVALID_BINARY_PLATFORM_HEADER},
        {"native shared gpa boundary", 1, 0, 0, 1, 0x1000, IGVMAPI_INVALID_BINARY_PLATFORM_HEADER},
        {"VSM shared gpa boundary", 1, 0, 1, 1, 0x1000, IGVMAPI_INVALID_BINARY_PLATFORM_HEADER},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        begin(cases[i].name);
        fb_platform(&F, cases[i].mask, cases[i].vtl, cases[i].type, cases[i].version,
                    cases[i].boundary);
        expect_result(cases[i].name, cases[i].expected);
    }

    begin("platform header length 24");
    fb_put32(body, 1);
    fb_put16(body + 6, 1);
    fb_hdr(&F, IGVM_VHT_SUPPORTED_PLATFORM, body, 24);
    expect_result("platform length 24", IGVMAPI_INVALID_BINARY_PLATFORM_HEADER);

    begin("unknown platform-range type 0x2");
    native_base();
    fb_hdr(&F, 0x2, body, 16);
    expect_result("platform type 0x2", IGVMAPI_INVALID_BINARY_PLATFORM_HEADER);

    begin("platform header truncated by the section end");
    fb_raw(&F, IGVM_VHT_SUPPORTED_PLATFORM, 16, body, 8, 0);
    expect_result("platform truncated", IGVMAPI_INVALID_BINARY_PLATFORM_HEADER);

    begin("two SEV-SNP platforms");
    fb_platform(&F, 1, 0, IGVM_PLATFORM_TYPE_SEV_SNP, 1, 0);
    fb_platform(&F, 2, 0, IGVM_PLATFORM_TYPE_SEV_SNP, 1, 0);
    expect_result("two SEV-SNP platforms", IGVMAPI_MULTIPLE_PLATFORM_HEADERS_WITH_SAME_ISOLATION);

    begin("two platforms sharing a mask but of different types");
    fb_platform(&F, 1, 0, IGVM_PLATFORM_TYPE_SEV, 1, 0);
    fb_platform(&F, 1, 0, IGVM_PLATFORM_TYPE_SEV_ES, 1, 0);
    expect_result("shared mask", IGVMAPI_OK);
}

/* ---- initialization headers ----------------------------------------------- */

static void reloc_region(uint32_t mask, uint16_t vp, uint8_t vtl, uint8_t flags, uint64_t align,
                         uint64_t gpa, uint64_t size, uint64_t min, uint64_t max)
{
    uint8_t b[48] = {0};
    fb_put32(b, mask);
    fb_put16(b + 4, vp);
    b[6] = vtl;
    b[7] = flags;
    fb_put64(b + 8, align);
    fb_put64(b + 16, gpa);
    fb_put64(b + 24, size);
    fb_put64(b + 32, min);
    fb_put64(b + 40, max);
    fb_hdr(&F, IGVM_VHT_RELOCATABLE_REGION, b, 48);
}

static void pt_reloc(uint32_t mask, uint16_t vp, uint8_t vtl, uint8_t reserved, uint64_t gpa,
                     uint64_t size, uint64_t used)
{
    uint8_t b[32] = {0};
    fb_put32(b, mask);
    fb_put16(b + 4, vp);
    b[6] = vtl;
    b[7] = reserved;
    fb_put64(b + 8, gpa);
    fb_put64(b + 16, size);
    fb_put64(b + 24, used);
    fb_hdr(&F, IGVM_VHT_PAGE_TABLE_RELOCATION_REGION, b, 32);
}

static void cca_policy(uint32_t mask, uint32_t reserved, uint64_t zeroes, uint64_t ones,
                       uint8_t reserved2_last)
{
    uint8_t b[32] = {0};
    fb_put32(b, mask);
    fb_put32(b + 4, reserved);
    fb_put64(b + 8, zeroes);
    fb_put64(b + 16, ones);
    b[31] = reserved2_last;
    fb_hdr(&F, IGVM_VHT_CCA_POLICY, b, 32);
}

/* A VBS VP context for vp 0 with `n` registers of the given vtl. */
static void vbs_context(uint32_t mask, uint16_t vp_index, uint8_t vtl, uint32_t n,
                        uint32_t reg_name)
{
    uint8_t data[4 + 4 * 32];
    uint8_t b[20] = {0};
    memset(data, 0, sizeof(data));
    fb_put32(data, n);
    for (uint32_t i = 0; i < n && i < 4; i++) {
        uint8_t *r = data + 4 + 32 * i;
        r[0] = vtl;
        fb_put32(r + 1, reg_name);
        memset(r + 5, 0x77, 11);      /* mbz: the reference rewrites it to zero */
        memset(r + 16, 0x11 + i, 16); /* value */
    }
    fb_put32(b + 8, mask);
    fb_put16(b + 16, vp_index);
    size_t at = fb_hdr(&F, IGVM_VHT_VP_CONTEXT, b, 20);
    fb_data(&F, at + 12, data, 4 + 32 * (n < 4 ? n : 4));
}

#define RIP 0x00020010u
#define GDTR 0x00070001u

static void test_initialization_headers(void)
{
    uint8_t body[16] = {0};

    begin("guest policy");
    native_base();
    fb_guest_policy(&F, 0x30000, 1, 0);
    expect_result("guest policy", IGVMAPI_OK);

    begin("guest policy reserved");
    native_base();
    fb_guest_policy(&F, 0x30000, 1, 1);
    expect_result("guest policy reserved", IGVMAPI_INVALID_BINARY_INITIALIZATION_HEADER);

    begin("guest policy length 24");
    native_base();
    fb_hdr(&F, IGVM_VHT_GUEST_POLICY, (uint8_t[24]){0}, 24);
    expect_result("guest policy length 24", IGVMAPI_INVALID_BINARY_INITIALIZATION_HEADER);

    begin("guest policy truncated");
    native_base();
    fb_raw(&F, IGVM_VHT_GUEST_POLICY, 16, body, 8, 0);
    expect_result("guest policy truncated", IGVMAPI_INVALID_BINARY_INITIALIZATION_HEADER);

    begin("CoRIM document (not supported by the C library)");
    native_base();
    fb_hdr(&F, IGVM_VHT_CORIM_DOCUMENT, body, 16);
    expect_result("corim document", IGVMAPI_INVALID_BINARY_INITIALIZATION_HEADER);

    begin("unknown initialization type 0x107");
    native_base();
    fb_hdr(&F, 0x107, body, 16);
    expect_result("init type 0x107", IGVMAPI_INVALID_BINARY_INITIALIZATION_HEADER);

    /* relocatable regions (native file: no VBS context can satisfy them) */
    begin("relocatable region without a VBS VP context");
    native_base();
    reloc_region(1, 0, 0, 0, 0x1000, 0x100000, 0x2000, 0, 0x10000000);
    expect_result("reloc without vp context", IGVMAPI_NO_MATCHING_VP_CONTEXT);

    static const struct {
        const char *name;
        uint8_t vtl;
        uint64_t align, gpa, size, min, max;
    } bad_reloc[] = {
        {"relocatable region vtl 3", 3, 0x1000, 0x100000, 0x2000, 0, 0x10000000},
        {"relocatable region size not 4K", 0, 0x1000, 0x100000, 0x2001, 0, 0x10000000},
        {"relocatable region alignment not 4K", 0, 0x1800, 0x100000, 0x2000, 0, 0x10000000},
        {"relocatable region alignment 0", 0, 0, 0x100000, 0x2000, 0, 0x10000000},
        {"relocatable region gpa not aligned", 0, 0x200000, 0x100000, 0x2000, 0, 0x10000000},
        {"relocatable region minimum not aligned", 0, 0x1000, 0x100000, 0x2000, 0x800, 0x10000000},
        {"relocatable region maximum not aligned", 0, 0x1000, 0x100000, 0x2000, 0, 0x10000001},
    };
    for (size_t i = 0; i < sizeof(bad_reloc) / sizeof(bad_reloc[0]); i++) {
        begin(bad_reloc[i].name);
        native_base();
        reloc_region(1, 0, bad_reloc[i].vtl, 0, bad_reloc[i].align, bad_reloc[i].gpa,
                     bad_reloc[i].size, bad_reloc[i].min, bad_reloc[i].max);
        expect_result(bad_reloc[i].name, IGVMAPI_INVALID_BINARY_INITIALIZATION_HEADER);
    }

    /* VBS files, where VP contexts satisfy relocation headers */
    begin("VBS: relocation + page table relocation + matching VP context");
    fb_platform(&F, 1, 2, IGVM_PLATFORM_TYPE_VSM_ISOLATION, 1, 0);
    reloc_region(1, 0, 2, 7, 0x200000, 0x200000, 0x200000, 0, 0x40000000);
    pt_reloc(1, 0, 2, 0, 0x1000, 0x4000, 0x2000);
    vbs_context(1, 0, 2, 2, RIP);
    expect_result("VBS relocation ok", IGVMAPI_OK);

    begin("VBS: VP context for another VTL");
    fb_platform(&F, 1, 2, IGVM_PLATFORM_TYPE_VSM_ISOLATION, 1, 0);
    pt_reloc(1, 0, 2, 0, 0x1000, 0x4000, 0x2000);
    vbs_context(1, 0, 0, 1, RIP);
    expect_result("VBS vtl mismatch", IGVMAPI_NO_MATCHING_VP_CONTEXT);

    begin("VBS: two page table relocations for one mask");
    fb_platform(&F, 1, 2, IGVM_PLATFORM_TYPE_VSM_ISOLATION, 1, 0);
    pt_reloc(1, 0, 2, 0, 0x1000, 0x4000, 0x2000);
    pt_reloc(1, 0, 2, 0, 0x10000, 0x4000, 0x2000);
    vbs_context(1, 0, 2, 1, RIP);
    expect_result("two pt relocs", IGVMAPI_MULTIPLE_PAGE_TABLE_RELOCATION_HEADERS);

    begin("VBS: relocation regions overlap");
    fb_platform(&F, 1, 2, IGVM_PLATFORM_TYPE_VSM_ISOLATION, 1, 0);
    reloc_region(1, 0, 2, 0, 0x1000, 0x2000, 0x2000, 0, 0x40000000);
    pt_reloc(1, 0, 2, 0, 0x3000, 0x4000, 0x2000);
    vbs_context(1, 0, 2, 1, RIP);
    expect_result("regions overlap", IGVMAPI_RELOCATION_REGIONS_OVERLAP);

    begin("VBS: adjacent relocation regions");
    fb_platform(&F, 1, 2, IGVM_PLATFORM_TYPE_VSM_ISOLATION, 1, 0);
    reloc_region(1, 0, 2, 0, 0x1000, 0x2000, 0x2000, 0, 0x40000000);
    pt_reloc(1, 0, 2, 0, 0x4000, 0x4000, 0x2000);
    vbs_context(1, 0, 2, 1, RIP);
    expect_result("regions adjacent", IGVMAPI_OK);

    begin("VBS: parameter insert inside the page table region");
    fb_platform(&F, 1, 2, IGVM_PLATFORM_TYPE_VSM_ISOLATION, 1, 0);
    pt_reloc(1, 0, 2, 0, 0x10000, 0x4000, 0x2000);
    fb_param_area(&F, 0x1000, 0);
    fb_param_insert(&F, 0x13000, 1, 0);
    vbs_context(1, 0, 2, 1, RIP);
    expect_result("insert in pt region", IGVMAPI_PARAMETER_INSERT_INSIDE_PAGE_TABLE_REGION);

    begin("VBS: parameter insert just past the page table region");
    fb_platform(&F, 1, 2, IGVM_PLATFORM_TYPE_VSM_ISOLATION, 1, 0);
    pt_reloc(1, 0, 2, 0, 0x10000, 0x4000, 0x2000);
    fb_param_area(&F, 0x1000, 0);
    fb_param_insert(&F, 0x14000, 1, 0);
    vbs_context(1, 0, 2, 1, RIP);
    expect_result("insert past pt region", IGVMAPI_OK);

    begin("page table relocation reserved byte");
    native_base();
    pt_reloc(1, 0, 0, 1, 0x1000, 0x4000, 0x2000);
    expect_result("pt reloc reserved", IGVMAPI_INVALID_BINARY_INITIALIZATION_HEADER);
    begin("page table relocation used_size > size");
    native_base();
    pt_reloc(1, 0, 0, 0, 0x1000, 0x4000, 0x5000);
    expect_result("pt reloc used > size", IGVMAPI_INVALID_BINARY_INITIALIZATION_HEADER);
    begin("page table relocation gpa not 4K");
    native_base();
    pt_reloc(1, 0, 0, 0, 0x1800, 0x4000, 0x2000);
    expect_result("pt reloc gpa", IGVMAPI_INVALID_BINARY_INITIALIZATION_HEADER);
    begin("page table relocation vtl 3");
    native_base();
    pt_reloc(1, 0, 3, 0, 0x1000, 0x4000, 0x2000);
    expect_result("pt reloc vtl", IGVMAPI_INVALID_BINARY_INITIALIZATION_HEADER);

    /* CCA policy */
    begin("CCA policy in an x64 file");
    native_base();
    cca_policy(1, 0, 1, 2, 0);
    expect_result("cca policy x64", IGVMAPI_INVALID_HEADER_ARCH);

    begin("CCA policy on a CCA platform");
    F.version = 2;
    F.arch = 1;
    fb_platform(&F, 1, 0, IGVM_PLATFORM_TYPE_CCA, 1, 0);
    cca_policy(1, 0, 1, 2, 0);
    expect_result("cca policy ok", IGVMAPI_OK);

    begin("CCA policy naming a VSM platform");
    F.version = 2;
    F.arch = 1;
    fb_platform(&F, 1, 0, IGVM_PLATFORM_TYPE_CCA, 1, 0);
    fb_platform(&F, 2, 0, IGVM_PLATFORM_TYPE_VSM_ISOLATION, 1, 0);
    cca_policy(3, 0, 1, 2, 0);
    expect_result("cca policy mask", IGVMAPI_INVALID_CCA_POLICY_COMPATIBILITY_MASK);

    begin("CCA policy zeroes/ones conflict");
    F.version = 2;
    F.arch = 1;
    fb_platform(&F, 1, 0, IGVM_PLATFORM_TYPE_CCA, 1, 0);
    cca_policy(1, 0, 3, 2, 0);
    expect_result("cca conflict", IGVMAPI_INVALID_BINARY_INITIALIZATION_HEADER);

    begin("CCA policy reserved2");
    F.version = 2;
    F.arch = 1;
    fb_platform(&F, 1, 0, IGVM_PLATFORM_TYPE_CCA, 1, 0);
    cca_policy(1, 0, 1, 2, 9);
    expect_result("cca reserved2", IGVMAPI_INVALID_BINARY_INITIALIZATION_HEADER);
}

/* ---- directive headers ----------------------------------------------------- */

static void test_directive_headers(void)
{
    uint8_t body[24] = {0};
    uint8_t ctx[4096];

    begin("page data with and without data");
    native_base();
    fb_page(&F, 0x1000, 1, 0, IGVM_PAGE_DATA_TYPE_NORMAL, PAGE_A);
    fb_page(&F, 0x2000, 1, 3, IGVM_PAGE_DATA_TYPE_CPUID_XF, NULL);
    expect_result("page data ok", IGVMAPI_OK);

    begin("page data gpa not 4K aligned");
    native_base();
    fb_page(&F, 0x1800, 1, 0, 0, NULL);
    expect_result("page gpa", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    begin("page data type 4");
    native_base();
    fb_page(&F, 0x1000, 1, 0, 4, NULL);
    expect_result("page type", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    begin("page data reserved");
    native_base();
    fb_put64(body, 0x1000);
    fb_put32(body + 8, 1);
    fb_put16(body + 22, 1);
    fb_hdr(&F, IGVM_VHT_PAGE_DATA, body, 24);
    expect_result("page reserved", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    begin("page data length 20");
    native_base();
    fb_hdr(&F, IGVM_VHT_PAGE_DATA, (uint8_t[24]){0}, 20);
    expect_result("page length", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    begin("page data shorter than a page at the end of the file");
    native_base();
    fb_put64(body, 0x1000);
    fb_put32(body + 8, 1);
    fb_put16(body + 22, 0);
    size_t at = fb_hdr(&F, IGVM_VHT_PAGE_DATA, body, 24);
    fb_data(&F, at + 12, PAGE_A, 4095);
    expect_result("page data short", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    begin("page data offset inside the headers");
    native_base();
    fb_put64(body, 0x1000);
    fb_put32(body + 12, 24);
    fb_hdr(&F, IGVM_VHT_PAGE_DATA, body, 24);
    fb_tail(&F, 8192);
    expect_result("page data offset in headers", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);
    memset(body, 0, sizeof(body));

    begin("page data with the 2MB flag (not checked by the reference)");
    native_base();
    fb_page(&F, 0x200000, 1, 1, 0, PAGE_A);
    expect_result("2mb flag", IGVMAPI_OK);

    begin("page data with compatibility mask 0 is dropped");
    native_base();
    fb_page(&F, 0x1801, 0, 0, 9, NULL); /* would be invalid, but its mask is 0 */
    /* binary checks still apply to it: this one is rejected */
    expect_result("mask 0 still parsed", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    /* parameters */
    begin("parameter area, usage, insert");
    native_base();
    fb_param_area(&F, 0x2000, 7);
    fb_param(&F, IGVM_VHT_VP_COUNT_PARAMETER, 7, 0);
    fb_param(&F, IGVM_VHT_MEMORY_MAP, 7, 8);
    fb_param(&F, IGVM_VHT_ENVIRONMENT_INFO_PARAMETER, 7, 16);
    fb_param(&F, IGVM_VHT_COMMAND_LINE, 7, 32);
    fb_param_insert(&F, 0x10000, 1, 7);
    expect_result("params ok", IGVMAPI_OK);

    begin("parameter area size not 4K");
    native_base();
    fb_param_area(&F, 0x1800, 0);
    expect_result("area size", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    begin("parameter area declared twice");
    native_base();
    fb_param_area(&F, 0x1000, 0);
    fb_param_area(&F, 0x1000, 0);
    expect_result("area twice", IGVMAPI_INVALID_PARAMETER_AREA_INDEX);

    begin("parameter without area");
    native_base();
    fb_param(&F, IGVM_VHT_VP_COUNT_PARAMETER, 0, 0);
    expect_result("usage no area", IGVMAPI_INVALID_PARAMETER_AREA_INDEX);

    begin("parameter after insert");
    native_base();
    fb_param_area(&F, 0x1000, 0);
    fb_param_insert(&F, 0x10000, 1, 0);
    fb_param(&F, IGVM_VHT_SRAT, 0, 0);
    expect_result("usage after insert", IGVMAPI_INVALID_PARAMETER_AREA_INDEX);

    begin("insert twice");
    native_base();
    fb_param_area(&F, 0x1000, 0);
    fb_param_insert(&F, 0x10000, 1, 0);
    fb_param_insert(&F, 0x20000, 1, 0);
    expect_result("insert twice", IGVMAPI_INVALID_PARAMETER_AREA_INDEX);

    begin("insert without area");
    native_base();
    fb_param_insert(&F, 0x10000, 1, 0);
    expect_result("insert no area", IGVMAPI_INVALID_PARAMETER_AREA_INDEX);

    begin("insert with mask 0 is dropped, so the area stays open");
    native_base();
    fb_param_area(&F, 0x1000, 0);
    fb_param_insert(&F, 0x10000, 0, 0);
    fb_param(&F, IGVM_VHT_SRAT, 0, 0);
    fb_param_insert(&F, 0x20000, 1, 0);
    expect_result("insert mask 0", IGVMAPI_OK);

    begin("insert gpa not 4K");
    native_base();
    fb_param_area(&F, 0x1000, 0);
    fb_param_insert(&F, 0x10800, 1, 0);
    expect_result("insert gpa", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    begin("parameter area with initial data beyond the file");
    native_base();
    {
        uint8_t a[16] = {0};
        fb_put64(a, 0x2000);
        size_t pos = fb_hdr(&F, IGVM_VHT_PARAMETER_AREA, a, 16);
        fb_data(&F, pos + 12, PAGE_A, 4096);
    }
    expect_result("area data short", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    /* VP contexts */
    memset(ctx, 0, sizeof(ctx));
    fb_put64(ctx + 128, 0xFFF0); /* rip */
    begin("native VP context");
    native_base();
    fb_vp_context(&F, 0, 1, 0, ctx);
    expect_result("native vp ok", IGVMAPI_OK);

    begin("native VP context with bytes after the structure");
    native_base();
    ctx[232] = 1;
    fb_vp_context(&F, 0, 1, 0, ctx);
    ctx[232] = 0;
    expect_result("native vp trailing", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    begin("VP context mask naming two platforms");
    native_base();
    fb_platform(&F, 2, 0, IGVM_PLATFORM_TYPE_SEV, 1, 0);
    fb_vp_context(&F, 0, 3, 0, ctx);
    expect_result("vp mask 3", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    begin("VP context mask naming no platform");
    native_base();
    fb_vp_context(&F, 0, 2, 0, ctx);
    expect_result("vp mask 2", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    begin("TDX VP context");
    fb_platform(&F, 1, 0, IGVM_PLATFORM_TYPE_TDX, 1, 0);
    fb_vp_context(&F, 0, 1, 0, ctx);
    expect_result("tdx vp", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    begin("SEV-SNP VMSA");
    fb_platform(&F, 1, 0, IGVM_PLATFORM_TYPE_SEV_SNP, 1, 0);
    fb_vp_context(&F, 0xFFFFF000, 1, 0, PAGE_A);
    expect_result("snp vmsa", IGVMAPI_OK);

    begin("SEV-ES VMSA gpa not 4K");
    fb_platform(&F, 1, 0, IGVM_PLATFORM_TYPE_SEV_ES, 1, 0);
    fb_vp_context(&F, 0xFFFFF800, 1, 0, PAGE_A);
    expect_result("es vmsa gpa", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    begin("VP context without its padding");
    native_base();
    {
        uint8_t v[20] = {0};
        fb_put32(v + 8, 1);
        fb_raw(&F, IGVM_VHT_VP_CONTEXT, 20, v, 20, 0);
    }
    expect_result("vp no padding", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    begin("VBS VP context with no registers");
    fb_platform(&F, 1, 2, IGVM_PLATFORM_TYPE_VSM_ISOLATION, 1, 0);
    vbs_context(1, 0, 2, 0, RIP);
    expect_result("vbs no regs", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    begin("VBS VP context with an unsupported register");
    fb_platform(&F, 1, 2, IGVM_PLATFORM_TYPE_VSM_ISOLATION, 1, 0);
    vbs_context(1, 0, 2, 1, 0x00020000u /* Rax: not accepted by the reference */);
    expect_result("vbs rax", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    begin("VBS VP context with vtl 3");
    fb_platform(&F, 1, 2, IGVM_PLATFORM_TYPE_VSM_ISOLATION, 1, 0);
    vbs_context(1, 0, 3, 1, RIP);
    expect_result("vbs vtl 3", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    begin("VBS VP context for vp 1");
    fb_platform(&F, 1, 2, IGVM_PLATFORM_TYPE_VSM_ISOLATION, 1, 0);
    vbs_context(1, 1, 2, 1, RIP);
    expect_result("vbs vp 1", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    /* other directives */
    begin("required memory");
    native_base();
    fb_required_memory(&F, 0x100000, 1, 0x200000, 0xFFFFFFFF);
    expect_result("required memory", IGVMAPI_OK);
    begin("required memory size not 4K");
    native_base();
    fb_required_memory(&F, 0x100000, 1, 0x200800, 0);
    expect_result("required size", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);
    begin("required memory gpa not 4K");
    native_base();
    fb_required_memory(&F, 0x100800, 1, 0x1000, 0);
    expect_result("required gpa", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);
    begin("required memory reserved");
    native_base();
    {
        uint8_t r[24] = {0};
        fb_put32(r + 8, 1);
        fb_put32(r + 20, 5);
        fb_hdr(&F, IGVM_VHT_REQUIRED_MEMORY, r, 24);
    }
    expect_result("required reserved", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    begin("SNP ID block and VBS measurement (not validated)");
    fb_platform(&F, 1, 0, IGVM_PLATFORM_TYPE_SEV_SNP, 1, 0);
    {
        static uint8_t id[696], vbs[864];
        memset(id, 0x5A, sizeof(id));
        fb_put32(id, 1);
        fb_hdr(&F, IGVM_VHT_SNP_ID_BLOCK, id, sizeof(id));
        memset(vbs, 0x3C, sizeof(vbs));
        fb_put32(vbs, 1);
        fb_hdr(&F, IGVM_VHT_VBS_MEASUREMENT, vbs, sizeof(vbs));
    }
    expect_result("id block", IGVMAPI_OK);

    begin("SNP ID block length 700");
    fb_platform(&F, 1, 0, IGVM_PLATFORM_TYPE_SEV_SNP, 1, 0);
    {
        static uint8_t id[700];
        fb_hdr(&F, IGVM_VHT_SNP_ID_BLOCK, id, sizeof(id));
    }
    expect_result("id block length", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    begin("error range gpa not 4K");
    native_base();
    {
        uint8_t e[16] = {0};
        fb_put64(e, 0x1800);
        fb_put32(e + 8, 1);
        fb_hdr(&F, IGVM_VHT_ERROR_RANGE, e, 16);
    }
    expect_result("error range gpa", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    begin("reserved directive type 0x306");
    native_base();
    fb_hdr(&F, IGVM_RESERVED_DO_NOT_USE, (uint8_t[8]){0}, 8);
    expect_result("type 0x306", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    begin("unknown directive type 0x314");
    native_base();
    fb_hdr(&F, 0x314, (uint8_t[8]){0}, 8);
    expect_result("type 0x314", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);

    begin("parameter length 16");
    native_base();
    fb_param_area(&F, 0x1000, 0);
    fb_hdr(&F, IGVM_VHT_VP_COUNT_PARAMETER, (uint8_t[16]){0}, 16);
    expect_result("param length", IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER);
}

/* ---- the C API -------------------------------------------------------------- */

static void api_file_build(void)
{
    uint8_t ctx[4096] = {0};
    uint8_t e[16] = {0};

    begin("API file");
    fb_platform(&F, 1, 0, IGVM_PLATFORM_TYPE_NATIVE, 1, 0);
    fb_platform(&F, 2, 0, IGVM_PLATFORM_TYPE_SEV_SNP, 1, 0);
    fb_guest_policy(&F, 0x30000, 2, 0);
    fb_guest_policy(&F, 0x1, 0, 0);                       /* mask 0: dropped */
    fb_page(&F, 0x1000, 3, 0, IGVM_PAGE_DATA_TYPE_NORMAL, PAGE_A);  /* 0 */
    fb_page(&F, 0x2000, 1, 2, IGVM_PAGE_DATA_TYPE_NORMAL, NULL);    /* 1 */
    fb_page(&F, 0x3000, 0, 0, IGVM_PAGE_DATA_TYPE_NORMAL, NULL);    /* dropped */
    fb_param_area(&F, 0x1000, 0);                                   /* 2 */
    fb_param(&F, IGVM_VHT_VP_COUNT_PARAMETER, 0, 4);                /* 3 */
    fb_param_insert(&F, 0x8000, 3, 0);                              /* 4 */
    fb_put64(ctx + 128, 0xFFF0);
    fb_vp_context(&F, 0x7000, 1, 0, ctx);                           /* 5: native, gpa dropped */
    fb_vp_context(&F, 0xF000, 2, 3, PAGE_A);                        /* 6: SNP VMSA */
    fb_required_memory(&F, 0x100000, 3, 0x2000, 0xFFFFFFFF);        /* 7 */
    fb_put64(e, 0x9000);
    fb_put32(e + 8, 1);
    fb_put32(e + 12, 0x1000);
    fb_hdr(&F, IGVM_VHT_ERROR_RANGE, e, 16);                        /* 8 */
    /* a data page identical to the first: file data may be shared */
    fb_page(&F, 0x4000, 1, 0, IGVM_PAGE_DATA_TYPE_SECRETS, PAGE_A); /* 9 */
}

static IgvmHandle api_file(void)
{
    api_file_build();
    return parse_built();
}

static void api_file_bytes(uint8_t **file, uint32_t *len)
{
    api_file_build();
    *file = fb_finish(&F, len);
}

static void expect_buffer(IgvmHandle igvm, IgvmHandle buf, const uint8_t *bytes, int32_t len)
{
    EXPECT(buf > 0);
    EXPECT_EQ(igvm_get_buffer_size(igvm, buf), len);
    const uint8_t *p = igvm_get_buffer(igvm, buf);
    EXPECT(p != NULL);
    if (p && igvm_get_buffer_size(igvm, buf) == len) {
        EXPECT(memcmp(p, bytes, (size_t)len) == 0);
    }
}

static void test_api(void)
{
    IgvmHandle igvm = api_file();
    IgvmHandle buf;
    uint8_t want[64];

    current = "API counts and types";
    EXPECT(igvm > 0);
    EXPECT_EQ(igvm_header_count(igvm, IGVM_HEADER_SECTION_PLATFORM), 2);
    EXPECT_EQ(igvm_header_count(igvm, IGVM_HEADER_SECTION_INITIALIZATION), 1);
    EXPECT_EQ(igvm_header_count(igvm, IGVM_HEADER_SECTION_DIRECTIVE), 10);
    EXPECT_EQ(igvm_header_count(igvm, 3), IGVMAPI_INVALID_PARAMETER);
    static const uint32_t types[] = {
        IGVM_VHT_PAGE_DATA, IGVM_VHT_PAGE_DATA, IGVM_VHT_PARAMETER_AREA,
        IGVM_VHT_VP_COUNT_PARAMETER, IGVM_VHT_PARAMETER_INSERT, IGVM_VHT_VP_CONTEXT,
        IGVM_VHT_VP_CONTEXT, IGVM_VHT_REQUIRED_MEMORY, IGVM_VHT_ERROR_RANGE,
        IGVM_VHT_PAGE_DATA,
    };
    for (uint32_t i = 0; i < 10; i++) {
        EXPECT_EQ(igvm_get_header_type(igvm, IGVM_HEADER_SECTION_DIRECTIVE, i), types[i]);
    }
    EXPECT_EQ(igvm_get_header_type(igvm, IGVM_HEADER_SECTION_PLATFORM, 1),
              IGVM_VHT_SUPPORTED_PLATFORM);
    EXPECT_EQ(igvm_get_header_type(igvm, IGVM_HEADER_SECTION_INITIALIZATION, 0),
              IGVM_VHT_GUEST_POLICY);
    EXPECT_EQ(igvm_get_header_type(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 10),
              IGVMAPI_INVALID_PARAMETER);
    EXPECT_EQ(igvm_get_header_type(igvm, 7, 0), IGVMAPI_INVALID_PARAMETER);

    current = "API platform header buffer";
    memset(want, 0, sizeof(want));
    fb_put32(want, IGVM_VHT_SUPPORTED_PLATFORM);
    fb_put32(want + 4, 16);
    fb_put32(want + 8, 2);
    want[13] = IGVM_PLATFORM_TYPE_SEV_SNP;
    fb_put16(want + 14, 1);
    buf = igvm_get_header(igvm, IGVM_HEADER_SECTION_PLATFORM, 1);
    expect_buffer(igvm, buf, want, 24);
    igvm_free_buffer(igvm, buf);
    EXPECT_EQ(igvm_get_header_data(igvm, IGVM_HEADER_SECTION_PLATFORM, 0),
              IGVMAPI_INVALID_PARAMETER);

    current = "API guest policy buffer";
    memset(want, 0, sizeof(want));
    fb_put32(want, IGVM_VHT_GUEST_POLICY);
    fb_put32(want + 4, 16);
    fb_put64(want + 8, 0x30000);
    fb_put32(want + 16, 2);
    buf = igvm_get_header(igvm, IGVM_HEADER_SECTION_INITIALIZATION, 0);
    expect_buffer(igvm, buf, want, 24);
    EXPECT_EQ(igvm_get_header_data(igvm, IGVM_HEADER_SECTION_INITIALIZATION, 0),
              IGVMAPI_NO_DATA);

    current = "API page data buffer: prefix, fields, file_offset re-encoded as 0";
    memset(want, 0, sizeof(want));
    fb_put32(want, IGVM_VHT_PAGE_DATA);
    fb_put32(want + 4, 24);
    fb_put64(want + 8, 0x1000);
    fb_put32(want + 16, 3);
    buf = igvm_get_header(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 0);
    expect_buffer(igvm, buf, want, 32);
    {
        const IGVM_VHS_PAGE_DATA *pd =
            (const IGVM_VHS_PAGE_DATA *)(igvm_get_buffer(igvm, buf) +
                                         sizeof(IGVM_VHS_VARIABLE_HEADER));
        EXPECT_EQ(pd->gpa, 0x1000);
        EXPECT_EQ(pd->compatibility_mask, 3);
        EXPECT_EQ(pd->data_type, IGVM_PAGE_DATA_TYPE_NORMAL);
    }
    IgvmHandle data = igvm_get_header_data(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 0);
    expect_buffer(igvm, data, PAGE_A, 4096);
    EXPECT(data != buf);

    current = "API zero page: flags kept, no data";
    buf = igvm_get_header(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 1);
    {
        const IGVM_VHS_PAGE_DATA *pd =
            (const IGVM_VHS_PAGE_DATA *)(igvm_get_buffer(igvm, buf) + 8);
        EXPECT_EQ(pd->flags.unmeasured, 1);
        EXPECT_EQ(pd->flags.is_2mb_page, 0);
        EXPECT_EQ(pd->file_offset, 0);
    }
    igvm_free_buffer(igvm, buf);
    EXPECT_EQ(igvm_get_header_data(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 1), IGVMAPI_NO_DATA);

    current = "API parameter headers";
    EXPECT_EQ(igvm_get_header_data(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 2), IGVMAPI_NO_DATA);
    buf = igvm_get_header(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 3);
    memset(want, 0, sizeof(want));
    fb_put32(want, IGVM_VHT_VP_COUNT_PARAMETER);
    fb_put32(want + 4, 8);
    fb_put32(want + 12, 4);
    expect_buffer(igvm, buf, want, 16);
    buf = igvm_get_header(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 4);
    memset(want, 0, sizeof(want));
    fb_put32(want, IGVM_VHT_PARAMETER_INSERT);
    fb_put32(want + 4, 16);
    fb_put64(want + 8, 0x8000);
    fb_put32(want + 16, 3);
    expect_buffer(igvm, buf, want, 24);

    current = "API native VP context: length 20, padded to 24, gpa re-encoded as 0";
    buf = igvm_get_header(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 5);
    memset(want, 0, sizeof(want));
    fb_put32(want, IGVM_VHT_VP_CONTEXT);
    fb_put32(want + 4, 20);
    fb_put32(want + 16, 1);
    expect_buffer(igvm, buf, want, 32);
    data = igvm_get_header_data(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 5);
    EXPECT_EQ(igvm_get_buffer_size(igvm, data), 4096);
    EXPECT_EQ(fb_get32(igvm_get_buffer(igvm, data) + 128), 0xFFF0);

    current = "API SNP VP context keeps gpa and vp_index";
    buf = igvm_get_header(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 6);
    {
        const IGVM_VHS_VP_CONTEXT *vp =
            (const IGVM_VHS_VP_CONTEXT *)(igvm_get_buffer(igvm, buf) + 8);
        EXPECT_EQ(vp->gpa, 0xF000);
        EXPECT_EQ(vp->vp_index, 3);
        EXPECT_EQ(vp->compatibility_mask, 2);
        EXPECT_EQ(vp->file_offset, 0);
    }
    data = igvm_get_header_data(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 6);
    expect_buffer(igvm, data, PAGE_A, 4096);

    current = "API required memory: only vtl2_protectable survives";
    buf = igvm_get_header(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 7);
    memset(want, 0, sizeof(want));
    fb_put32(want, IGVM_VHT_REQUIRED_MEMORY);
    fb_put32(want + 4, 24);
    fb_put64(want + 8, 0x100000);
    fb_put32(want + 16, 3);
    fb_put32(want + 20, 0x2000);
    fb_put32(want + 24, 1);
    expect_buffer(igvm, buf, want, 32);
    EXPECT_EQ(igvm_get_header_data(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 7), IGVMAPI_NO_DATA);

    current = "API error range cannot be serialised";
    EXPECT_EQ(igvm_get_header(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 8), IGVMAPI_INVALID_FILE);
    EXPECT_EQ(igvm_get_header_data(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 8),
              IGVMAPI_INVALID_FILE);

    current = "API shared file data";
    data = igvm_get_header_data(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 9);
    expect_buffer(igvm, data, PAGE_A, 4096);

    current = "API handles";
    EXPECT_EQ(igvm_get_header(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 99),
              IGVMAPI_INVALID_PARAMETER);
    EXPECT_EQ(igvm_get_header(igvm, 3, 0), IGVMAPI_INVALID_PARAMETER);
    EXPECT_EQ(igvm_get_header(igvm + 1000, IGVM_HEADER_SECTION_DIRECTIVE, 0),
              IGVMAPI_INVALID_HANDLE);
    EXPECT_EQ(igvm_header_count(-5, IGVM_HEADER_SECTION_DIRECTIVE), IGVMAPI_INVALID_HANDLE);
    EXPECT_EQ(igvm_get_header_type(0, IGVM_HEADER_SECTION_DIRECTIVE, 0),
              IGVMAPI_INVALID_HANDLE);
    EXPECT_EQ(igvm_get_header_data(igvm + 1000, IGVM_HEADER_SECTION_DIRECTIVE, 0),
              IGVMAPI_INVALID_HANDLE);
    buf = igvm_get_header(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 0);
    EXPECT(igvm_get_buffer(igvm, buf) != NULL);
    EXPECT(igvm_get_buffer(igvm, buf + 1000) == NULL);
    EXPECT_EQ(igvm_get_buffer_size(igvm, buf + 1000), IGVMAPI_INVALID_HANDLE);
    EXPECT(igvm_get_buffer(igvm + 1000, buf) == NULL);
    igvm_free_buffer(igvm, buf);
    EXPECT(igvm_get_buffer(igvm, buf) == NULL);
    EXPECT_EQ(igvm_get_buffer_size(igvm, buf), IGVMAPI_INVALID_HANDLE);
    igvm_free_buffer(igvm, buf);        /* twice: no effect */
    igvm_free_buffer(igvm + 1000, buf); /* unknown file: no effect */

    /* a second file: its handles are distinct and its buffers separate */
    IgvmHandle other = api_file();
    current = "API two files";
    EXPECT(other > 0 && other != igvm);
    IgvmHandle ob = igvm_get_header(other, IGVM_HEADER_SECTION_PLATFORM, 0);
    EXPECT(ob > 0);
    EXPECT(igvm_get_buffer(igvm, ob) == NULL);
    EXPECT(igvm_get_buffer(other, ob) != NULL);

    igvm_free(igvm);
    current = "API after igvm_free";
    EXPECT_EQ(igvm_header_count(igvm, IGVM_HEADER_SECTION_PLATFORM), IGVMAPI_INVALID_HANDLE);
    EXPECT(igvm_get_buffer(igvm, data) == NULL);
    igvm_free(igvm); /* twice: no effect */
    EXPECT_EQ(igvm_header_count(other, IGVM_HEADER_SECTION_PLATFORM), 2);
    igvm_free(other);
}

static void test_vbs_data_reencoded(void)
{
    begin("VBS register data is re-encoded");
    fb_platform(&F, 1, 2, IGVM_PLATFORM_TYPE_VSM_ISOLATION, 1, 0);
    reloc_region(1, 0, 2, 0xFF, 0x1000, 0x100000, 0x2000, 0, 0x10000000);
    vbs_context(1, 0, 2, 1, RIP);
    vbs_context(1, 0, 2, 1, GDTR);
    IgvmHandle igvm = parse_built();
    current = "VBS register data is re-encoded";
    EXPECT(igvm > 0);
    /* relocatable region flags: only IS_VTL2, APPLY_RIP, APPLY_GDTR survive */
    IgvmHandle r = igvm_get_header(igvm, IGVM_HEADER_SECTION_INITIALIZATION, 0);
    EXPECT_EQ(igvm_get_buffer_size(igvm, r), 8 + 48);
    EXPECT_EQ(igvm_get_buffer(igvm, r)[8 + 7], 0x07);
    EXPECT_EQ(igvm_get_header_data(igvm, IGVM_HEADER_SECTION_INITIALIZATION, 0), IGVMAPI_NO_DATA);
    /* VBS VP context header: gpa, vp_index and file offset are 0 */
    r = igvm_get_header(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 0);
    EXPECT_EQ(fb_get32(igvm_get_buffer(igvm, r) + 8 + 8), 1);
    EXPECT_EQ(fb_get32(igvm_get_buffer(igvm, r) + 8 + 12), 0);
    IgvmHandle d = igvm_get_header_data(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 0);
    uint8_t want[36] = {0};
    fb_put32(want, 1);
    want[4] = 2;
    fb_put32(want + 5, RIP);
    memset(want + 4 + 16, 0x11, 8); /* a u64 register keeps 8 bytes */
    expect_buffer(igvm, d, want, 36);
    d = igvm_get_header_data(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 1);
    memset(want + 4 + 16, 0, 16);
    fb_put32(want + 5, GDTR);
    memset(want + 4 + 16 + 6, 0x11, 10); /* a table register: limit and base */
    expect_buffer(igvm, d, want, 36);
    igvm_free(igvm);
}

/*
 * The scenario of the reference C API's own tests (microsoft/igvm
 * igvm_c/test_data/src/main.rs builds the file, igvm_c/tests/igvm_test.c
 * states the expected values): one VSM platform, guest policies for masks 1
 * and 2, eight data pages whose file data is shared (pages 10-14 reuse the
 * data of pages 0-4, as the reference serializer deduplicates), a parameter
 * area, a VP count parameter and a parameter insert.
 */
static void test_reference_scenario(void)
{
    static uint8_t data[4][4096];
    static const uint64_t pages[8] = {0, 1, 2, 4, 10, 11, 12, 14};
    size_t rel[4];

    begin("reference C API test scenario");
    fb_platform(&F, 1, 0, IGVM_PLATFORM_TYPE_VSM_ISOLATION, 1, 0);
    fb_guest_policy(&F, 0x30000, 1, 0);
    fb_guest_policy(&F, 0x30000, 2, 0);
    for (int i = 0; i < 8; i++) {
        uint8_t b[24] = {0};
        fb_put64(b, pages[i] * 4096);
        fb_put32(b + 8, 1);
        size_t at = fb_hdr(&F, IGVM_VHT_PAGE_DATA, b, 24);
        if (i < 4) {
            memset(data[i], i + 1, 4096);
            rel[i] = F.data_len;
            fb_data(&F, at + 12, data[i], 4096);
        } else {
            fb_data_shared(&F, at + 12, rel[i - 4]);
        }
    }
    fb_param_area(&F, 4096, 0);
    fb_param(&F, IGVM_VHT_VP_COUNT_PARAMETER, 0, 0);
    fb_param_insert(&F, 20 * 4096, 1, 0);
    IgvmHandle igvm = parse_built();
    EXPECT(igvm > 0);

    EXPECT_EQ(igvm_header_count(igvm, IGVM_HEADER_SECTION_PLATFORM), 1);
    EXPECT_EQ(igvm_header_count(igvm, IGVM_HEADER_SECTION_INITIALIZATION), 2);
    EXPECT_EQ(igvm_header_count(igvm, IGVM_HEADER_SECTION_DIRECTIVE), 11);

    IgvmHandle h = igvm_get_header(igvm, IGVM_HEADER_SECTION_PLATFORM, 0);
    const IGVM_VHS_VARIABLE_HEADER *vh = (const IGVM_VHS_VARIABLE_HEADER *)igvm_get_buffer(igvm, h);
    EXPECT_EQ(vh->typ, IGVM_VHT_SUPPORTED_PLATFORM);
    EXPECT_EQ(vh->length, sizeof(IGVM_VHS_SUPPORTED_PLATFORM));
    const IGVM_VHS_SUPPORTED_PLATFORM *platform =
        (const IGVM_VHS_SUPPORTED_PLATFORM *)((const uint8_t *)vh + sizeof(*vh));
    EXPECT_EQ(platform->platform_type, IGVM_PLATFORM_TYPE_VSM_ISOLATION);
    EXPECT_EQ(platform->compatibility_mask, 1);
    EXPECT_EQ(platform->platform_version, 1);
    EXPECT_EQ(platform->highest_vtl, 0);
    EXPECT_EQ(platform->shared_gpa_boundary, 0);
    igvm_free_buffer(igvm, h);

    for (uint32_t i = 0; i < 2; i++) {
        h = igvm_get_header(igvm, IGVM_HEADER_SECTION_INITIALIZATION, i);
        vh = (const IGVM_VHS_VARIABLE_HEADER *)igvm_get_buffer(igvm, h);
        EXPECT_EQ(vh->typ, IGVM_VHT_GUEST_POLICY);
        EXPECT_EQ(vh->length, sizeof(IGVM_VHS_GUEST_POLICY));
        const IGVM_VHS_GUEST_POLICY *policy =
            (const IGVM_VHS_GUEST_POLICY *)((const uint8_t *)vh + sizeof(*vh));
        EXPECT_EQ(policy->policy, 0x30000);
        EXPECT_EQ(policy->compatibility_mask, i + 1);
        EXPECT_EQ(policy->reserved, 0);
        igvm_free_buffer(igvm, h);
    }

    h = igvm_get_header(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 1);
    vh = (const IGVM_VHS_VARIABLE_HEADER *)igvm_get_buffer(igvm, h);
    EXPECT_EQ(vh->typ, IGVM_VHT_PAGE_DATA);
    EXPECT_EQ(vh->length, sizeof(IGVM_VHS_PAGE_DATA));
    const IGVM_VHS_PAGE_DATA *page = (const IGVM_VHS_PAGE_DATA *)((const uint8_t *)vh + 8);
    EXPECT_EQ(page->data_type, IGVM_PAGE_DATA_TYPE_NORMAL);
    EXPECT_EQ(page->compatibility_mask, 1);
    EXPECT_EQ(page->file_offset, 0);
    EXPECT_EQ(page->flags.is_2mb_page, 0);
    EXPECT_EQ(page->flags.unmeasured, 0);
    EXPECT_EQ(page->flags.reserved, 0);
    EXPECT_EQ(page->gpa, 0x1000);
    EXPECT_EQ(page->reserved, 0);
    igvm_free_buffer(igvm, h);

    h = igvm_get_header(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 8);
    vh = (const IGVM_VHS_VARIABLE_HEADER *)igvm_get_buffer(igvm, h);
    EXPECT_EQ(vh->typ, IGVM_VHT_PARAMETER_AREA);
    EXPECT_EQ(vh->length, sizeof(IGVM_VHS_PARAMETER_AREA));
    const IGVM_VHS_PARAMETER_AREA *area =
        (const IGVM_VHS_PARAMETER_AREA *)((const uint8_t *)vh + 8);
    EXPECT_EQ(area->parameter_area_index, 0);
    EXPECT_EQ(area->file_offset, 0);
    EXPECT_EQ(area->number_of_bytes, 0x1000);
    igvm_free_buffer(igvm, h);

    h = igvm_get_header(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 9);
    vh = (const IGVM_VHS_VARIABLE_HEADER *)igvm_get_buffer(igvm, h);
    EXPECT_EQ(vh->typ, IGVM_VHT_VP_COUNT_PARAMETER);
    EXPECT_EQ(vh->length, sizeof(IGVM_VHS_PARAMETER));
    const IGVM_VHS_PARAMETER *param = (const IGVM_VHS_PARAMETER *)((const uint8_t *)vh + 8);
    EXPECT_EQ(param->parameter_area_index, 0);
    EXPECT_EQ(param->byte_offset, 0);
    igvm_free_buffer(igvm, h);

    h = igvm_get_header(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 10);
    vh = (const IGVM_VHS_VARIABLE_HEADER *)igvm_get_buffer(igvm, h);
    EXPECT_EQ(vh->typ, IGVM_VHT_PARAMETER_INSERT);
    EXPECT_EQ(vh->length, sizeof(IGVM_VHS_PARAMETER_INSERT));
    const IGVM_VHS_PARAMETER_INSERT *ins =
        (const IGVM_VHS_PARAMETER_INSERT *)((const uint8_t *)vh + 8);
    EXPECT_EQ(ins->parameter_area_index, 0);
    EXPECT_EQ(ins->compatibility_mask, 1);
    EXPECT_EQ(ins->gpa, 0x14000);
    igvm_free_buffer(igvm, h);

    /* associated data: page 3 (gpa 4 * 4K) holds 0x1000 bytes of 4 */
    h = igvm_get_header_data(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 3);
    EXPECT(h > 0);
    EXPECT_EQ(igvm_get_buffer_size(igvm, h), 0x1000);
    int all_four = 1;
    for (int i = 0; i < 0x1000; i++) {
        all_four &= igvm_get_buffer(igvm, h)[i] == 4;
    }
    EXPECT(all_four);
    igvm_free_buffer(igvm, h);
    /* shared data: page 7 (gpa 14 * 4K) reads the same bytes */
    h = igvm_get_header_data(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 7);
    EXPECT(h > 0 && igvm_get_buffer(igvm, h)[4095] == 4);
    igvm_free_buffer(igvm, h);
    EXPECT_EQ(igvm_get_header_data(igvm, IGVM_HEADER_SECTION_DIRECTIVE, 9), IGVMAPI_NO_DATA);
    igvm_free(igvm);

    static const uint8_t invalid[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    EXPECT_EQ(igvm_new_from_binary(invalid, sizeof(invalid)), IGVMAPI_INVALID_FIXED_HEADER);
}

/* Concurrent use: the handle table is shared by every thread of a process. */
static uint8_t *shared_file;
static uint32_t shared_len;

static void *worker(void *arg)
{
    int *bad = arg;
    for (int round = 0; round < 200; round++) {
        IgvmHandle h = igvm_new_from_binary(shared_file, shared_len);
        if (h <= 0) {
            (*bad)++;
            continue;
        }
        for (uint32_t i = 0; i < 10; i++) {
            IgvmHandle b = igvm_get_header(h, IGVM_HEADER_SECTION_DIRECTIVE, i);
            if (i != 8 && (b <= 0 || igvm_get_buffer(h, b) == NULL ||
                           fb_get32(igvm_get_buffer(h, b)) !=
                               (uint32_t)igvm_get_header_type(h, IGVM_HEADER_SECTION_DIRECTIVE, i))) {
                (*bad)++;
            }
            IgvmHandle d = igvm_get_header_data(h, IGVM_HEADER_SECTION_DIRECTIVE, 0);
            if (d <= 0 || igvm_get_buffer_size(h, d) != 4096 ||
                igvm_get_buffer(h, d)[100] != 0xA5) {
                (*bad)++;
            }
            igvm_free_buffer(h, d);
            if (round & 1) {
                igvm_free_buffer(h, b); /* otherwise igvm_free releases it */
            }
        }
        igvm_free(h);
    }
    return NULL;
}

static void test_threads(void)
{
    pthread_t t[4];
    int bad[4] = {0};

    api_file_bytes(&shared_file, &shared_len);
    current = "concurrent parsing and buffer handling";
    for (int i = 0; i < 4; i++) {
        EXPECT(pthread_create(&t[i], NULL, worker, &bad[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        EXPECT_EQ(bad[i], 0);
    }
    free(shared_file);
}

int main(void)
{
    memset(PAGE_A, 0xA5, sizeof(PAGE_A));
    memset(PAGE_Z, 0, sizeof(PAGE_Z));
    test_crc32();
    test_fixed_header();
    test_fixed_header_v2();
    test_sections();
    test_platform_headers();
    test_initialization_headers();
    test_directive_headers();
    test_api();
    test_vbs_data_reencoded();
    test_reference_scenario();
    test_threads();
    if (failures) {
        fprintf(stderr, "test-igvm: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("test-igvm: all %d checks passed\n", checks);
    return 0;
}
