/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * igvm_defs.h: structure layouts and constants of the IGVM file format.
 *
 * Written for igvm-harness from the IGVM specification (the definitions in
 * microsoft/igvm igvm_defs, whose C names come from that project's cbindgen
 * configuration).  Names, enum values and field layouts follow the C header
 * published by the reference library so that code written against it (QEMU's
 * backends/igvm.c) compiles unchanged.  Every structure is little-endian and
 * byte-exact: natural C alignment gives the specified layout for all of them
 * except where noted (IGVM_VHS_VP_CONTEXT, IgvmVbsVpContextRegister), which
 * are declared packed.  The layout is checked by static assertions in the
 * library and its tests.
 */
#ifndef IGVM_DEFS_H
#define IGVM_DEFS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__GNUC__) || defined(__clang__)
#define IGVM_PACKED __attribute__((packed))
#else
#define IGVM_PACKED
#endif

/* Bit-field helper types (declared by hand in the reference header too). */
typedef struct {
    uint32_t is_2mb_page : 1;
    uint32_t unmeasured : 1;
    uint32_t reserved : 30;
} IgvmPageDataFlags;

typedef struct {
    uint32_t vtl2_protectable : 1;
    uint32_t reserved : 31;
} IgvmRequiredMemoryFlags;

typedef struct {
    uint16_t is_shared : 1;
    uint16_t reserved : 15;
} IgvmMemoryMapEntryFlags;

typedef struct {
    uint32_t memory_is_shared : 1;
    uint32_t reserved : 31;
} IgvmEnvironmentInfo;

typedef uint64_t IGVM_U64_LE;
typedef uint32_t IGVM_U32_LE;

#define IGVM_UINT32_FLAGS_VALUE(x) *((uint32_t*)&(x))

/* Fixed header. */
#define IGVM_MAGIC_VALUE 0x4D564749u /* "IGVM" little-endian */
#define IGVM_FORMAT_VERSION_1 1
#define IGVM_FORMAT_VERSION_2 2
#define IGVM_PAGE_SIZE_4K 4096

/* Variable header type ranges (inclusive) and the "may be ignored" bit. */
#define IGVM_VHT_RANGE_PLATFORM_START 0x1u
#define IGVM_VHT_RANGE_PLATFORM_END 0x100u
#define IGVM_VHT_RANGE_INIT_START 0x101u
#define IGVM_VHT_RANGE_INIT_END 0x200u
#define IGVM_VHT_RANGE_DIRECTIVE_START 0x301u
#define IGVM_VHT_RANGE_DIRECTIVE_END 0x400u
#define IGVM_VHT_OPTIONAL_BIT (1u << 31)

/* Platform versions. */
#define IGVM_NATIVE_PLATFORM_VERSION 1
#define IGVM_VSM_ISOLATION_PLATFORM_VERSION 1
#define IGVM_SEV_SNP_PLATFORM_VERSION 1
#define IGVM_TDX_PLATFORM_VERSION 1
#define IGVM_SEV_PLATFORM_VERSION 1
#define IGVM_SEV_ES_PLATFORM_VERSION 1
#define IGVM_CCA_PLATFORM_VERSION 1

/* Relocatable region flags. */
#define IGVM_VHF_RELOCATABLE_REGION_IS_VTL2 1
#define IGVM_VHF_RELOCATABLE_REGION_APPLY_PC 2
#define IGVM_VHF_RELOCATABLE_REGION_APPLY_GDTR 4
#define IGVM_VHF_RELOCATABLE_REGION_APPLY_RIP IGVM_VHF_RELOCATABLE_REGION_APPLY_PC

/* Arm CCA policy attributes. */
#define CCA_POLICY_ATTR_DEBUG (1ull << 0)
#define CCA_POLICY_ATTR_MEC (1ull << 1)

/* Type of each structure in the variable header section. */
enum IgvmVariableHeaderType {
    IGVM_INVALID = 0,
    IGVM_VHT_SUPPORTED_PLATFORM = 0x1,
    IGVM_VHT_GUEST_POLICY = 0x101,
    IGVM_VHT_RELOCATABLE_REGION = 0x102,
    IGVM_VHT_PAGE_TABLE_RELOCATION_REGION = 0x103,
    IGVM_VHT_CORIM_DOCUMENT = 0x104,
    IGVM_VHT_CORIM_SIGNATURE = 0x105,
    IGVM_VHT_CCA_POLICY = 0x106,
    IGVM_VHT_PARAMETER_AREA = 0x301,
    IGVM_VHT_PAGE_DATA = 0x302,
    IGVM_VHT_PARAMETER_INSERT = 0x303,
    IGVM_VHT_VP_CONTEXT = 0x304,
    IGVM_VHT_REQUIRED_MEMORY = 0x305,
    IGVM_RESERVED_DO_NOT_USE = 0x306,
    IGVM_VHT_VP_COUNT_PARAMETER = 0x307,
    IGVM_VHT_SRAT = 0x308,
    IGVM_VHT_MADT = 0x309,
    IGVM_VHT_MMIO_RANGES = 0x30A,
    IGVM_VHT_SNP_ID_BLOCK = 0x30B,
    IGVM_VHT_MEMORY_MAP = 0x30C,
    IGVM_VHT_ERROR_RANGE = 0x30D,
    IGVM_VHT_COMMAND_LINE = 0x30E,
    IGVM_VHT_SLIT = 0x30F,
    IGVM_VHT_PPTT = 0x310,
    IGVM_VHT_VBS_MEASUREMENT = 0x311,
    IGVM_VHT_DEVICE_TREE = 0x312,
    IGVM_VHT_ENVIRONMENT_INFO_PARAMETER = 0x313,
};
typedef uint32_t IgvmVariableHeaderType;

/* Isolation platforms of IGVM_VHS_SUPPORTED_PLATFORM. */
enum IgvmPlatformType {
    IGVM_PLATFORM_TYPE_NATIVE = 0x00,
    IGVM_PLATFORM_TYPE_VSM_ISOLATION = 0x01,
    IGVM_PLATFORM_TYPE_SEV_SNP = 0x02,
    IGVM_PLATFORM_TYPE_TDX = 0x03,
    IGVM_PLATFORM_TYPE_SEV = 0x04,
    IGVM_PLATFORM_TYPE_SEV_ES = 0x05,
    IGVM_PLATFORM_TYPE_CCA = 0x06,
};
typedef uint8_t IgvmPlatformType;

/* Page data types of IGVM_VHS_PAGE_DATA. */
enum IgvmPageDataType {
    IGVM_PAGE_DATA_TYPE_NORMAL = 0x0,
    IGVM_PAGE_DATA_TYPE_SECRETS = 0x1,
    IGVM_PAGE_DATA_TYPE_CPUID_DATA = 0x2,
    IGVM_PAGE_DATA_TYPE_CPUID_XF = 0x3,
};
typedef uint16_t IgvmPageDataType;

/* Memory types of IGVM_VHS_MEMORY_MAP_ENTRY. */
enum IgvmMemoryMapEntryType {
    IGVM_MEMORY_MAP_ENTRY_TYPE_MEMORY = 0x0,
    IGVM_MEMORY_MAP_ENTRY_TYPE_PLATFORM_RESERVED = 0x1,
    IGVM_MEMORY_MAP_ENTRY_TYPE_PERSISTENT = 0x2,
    IGVM_MEMORY_MAP_ENTRY_TYPE_VTL2_PROTECTABLE = 0x3,
    IGVM_MEMORY_MAP_ENTRY_TYPE_SPECIFIC_PURPOSE = 0x4,
    IGVM_MEMORY_MAP_ENTRY_TYPE_HIDDEN = 0x5,
};
typedef uint16_t IgvmMemoryMapEntryType;

/* Arm CCA hash algorithms and live firmware activation policies. */
enum CcaHashAlgorithm {
    SHA256 = 0x0,
    SHA512 = 0x1,
    SHA384 = 0x2,
};
typedef uint8_t CcaHashAlgorithm;

enum CcaLfaPolicy {
    LFA_DISALLOW = 0x0,
    LFA_ALLOW = 0x1,
};
typedef uint8_t CcaLfaPolicy;

/* Version 1 fixed header at offset 0 of every file (24 bytes). */
typedef struct IGVM_FIXED_HEADER {
    uint32_t magic;
    uint32_t format_version;
    uint32_t variable_header_offset;
    uint32_t variable_header_size;
    uint32_t total_file_size;
    uint32_t checksum;
} IGVM_FIXED_HEADER;

/* Type/length prefix of each variable header (8 bytes). */
typedef struct IGVM_VHS_VARIABLE_HEADER {
    IgvmVariableHeaderType typ;
    uint32_t length;
} IGVM_VHS_VARIABLE_HEADER;

/* 16 bytes. */
typedef struct IGVM_VHS_SUPPORTED_PLATFORM {
    uint32_t compatibility_mask;
    uint8_t highest_vtl;
    IgvmPlatformType platform_type;
    uint16_t platform_version;
    uint64_t shared_gpa_boundary;
} IGVM_VHS_SUPPORTED_PLATFORM;

/* 16 bytes. */
typedef struct IGVM_VHS_GUEST_POLICY {
    uint64_t policy;
    uint32_t compatibility_mask;
    uint32_t reserved;
} IGVM_VHS_GUEST_POLICY;

/* AMD SEV-SNP guest policy bits (IGVM_VHS_GUEST_POLICY.policy). */
typedef struct IgvmSnpPolicy {
    uint64_t abi_minor : 8;
    uint64_t abi_major : 8;
    uint64_t smt : 1;
    uint64_t reserved_must_be_one : 1;
    uint64_t migrate_ma : 1;
    uint64_t debug : 1;
    uint64_t single_socket : 1;
    uint64_t reserved : 43;
} IgvmSnpPolicy;

/* Intel TDX policy bits (IGVM_VHS_GUEST_POLICY.policy). */
typedef struct IgvmTdxPolicy {
    uint64_t debug_allowed : 1;
    uint64_t sept_ve_disable : 1;
    uint64_t migratable : 1;
    uint64_t reserved : 61;
} IgvmTdxPolicy;

/* 32 bytes. */
typedef struct IGVM_VHS_CCA_POLICY {
    uint32_t compatibility_mask;
    uint32_t reserved;
    uint64_t attributes_required_zeroes;
    uint64_t attributes_required_ones;
    CcaHashAlgorithm hash_algorithm;
    CcaLfaPolicy lfa_policy;
    uint8_t reserved2[6];
} IGVM_VHS_CCA_POLICY;

/* 48 bytes. */
typedef struct IGVM_VHS_RELOCATABLE_REGION {
    uint32_t compatibility_mask;
    uint16_t vp_index;
    uint8_t vtl;
    uint8_t flags;
    uint64_t relocation_alignment;
    uint64_t relocation_region_gpa;
    uint64_t relocation_region_size;
    uint64_t minimum_relocation_gpa;
    uint64_t maximum_relocation_gpa;
} IGVM_VHS_RELOCATABLE_REGION;

/* 32 bytes. */
typedef struct IGVM_VHS_PAGE_TABLE_RELOCATION {
    uint32_t compatibility_mask;
    uint16_t vp_index;
    uint8_t vtl;
    uint8_t reserved;
    uint64_t gpa;
    uint64_t size;
    uint64_t used_size;
} IGVM_VHS_PAGE_TABLE_RELOCATION;

/* 16 bytes. */
typedef struct IGVM_VHS_PARAMETER_AREA {
    uint64_t number_of_bytes;
    uint32_t parameter_area_index;
    uint32_t file_offset;
} IGVM_VHS_PARAMETER_AREA;

/* 24 bytes. */
typedef struct IGVM_VHS_PAGE_DATA {
    uint64_t gpa;
    uint32_t compatibility_mask;
    uint32_t file_offset;
    IgvmPageDataFlags flags;
    IgvmPageDataType data_type;
    uint16_t reserved;
} IGVM_VHS_PAGE_DATA;

/* 16 bytes. */
typedef struct IGVM_VHS_PARAMETER_INSERT {
    uint64_t gpa;
    uint32_t compatibility_mask;
    uint32_t parameter_area_index;
} IGVM_VHS_PARAMETER_INSERT;

/* 8 bytes. */
typedef struct IGVM_VHS_PARAMETER {
    uint32_t parameter_area_index;
    uint32_t byte_offset;
} IGVM_VHS_PARAMETER;

/*
 * 20 bytes: the specification's layout (gpa is an unaligned little-endian
 * u64), padded to 24 in the variable header section.  Declared packed so that
 * sizeof matches the length field of the header.
 */
typedef struct IGVM_PACKED IGVM_VHS_VP_CONTEXT {
    IGVM_U64_LE gpa;
    uint32_t compatibility_mask;
    uint32_t file_offset;
    uint16_t vp_index;
    uint16_t reserved;
} IGVM_VHS_VP_CONTEXT;

/* Header of VBS VP context file data. */
typedef struct IgvmVbsVpContextHeader {
    uint32_t register_count;
} IgvmVbsVpContextHeader;

/* One register of VBS VP context file data (32 bytes, packed). */
typedef struct IGVM_PACKED IgvmVbsVpContextRegister {
    uint8_t vtl;
    IGVM_U32_LE register_name;
    uint8_t mbz[11];
    uint8_t register_value[16];
} IgvmVbsVpContextRegister;

/* 24 bytes. */
typedef struct IGVM_VHS_REQUIRED_MEMORY {
    uint64_t gpa;
    uint32_t compatibility_mask;
    uint32_t number_of_bytes;
    IgvmRequiredMemoryFlags flags;
    uint32_t reserved;
} IGVM_VHS_REQUIRED_MEMORY;

/* 16 bytes. */
typedef struct IGVM_VHS_MEMORY_RANGE {
    uint64_t starting_gpa_page_number;
    uint64_t number_of_pages;
} IGVM_VHS_MEMORY_RANGE;

/* 32 bytes. */
typedef struct IGVM_VHS_MMIO_RANGES {
    IGVM_VHS_MEMORY_RANGE mmio_ranges[2];
} IGVM_VHS_MMIO_RANGES;

/* 144 bytes. */
typedef struct IGVM_VHS_SNP_ID_BLOCK_SIGNATURE {
    uint8_t r_comp[72];
    uint8_t s_comp[72];
} IGVM_VHS_SNP_ID_BLOCK_SIGNATURE;

/* 152 bytes. */
typedef struct IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY {
    uint32_t curve;
    uint32_t reserved;
    uint8_t qx[72];
    uint8_t qy[72];
} IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY;

/* 696 bytes. */
typedef struct IGVM_VHS_SNP_ID_BLOCK {
    uint32_t compatibility_mask;
    uint8_t author_key_enabled;
    uint8_t reserved[3];
    uint8_t ld[48];
    uint8_t family_id[16];
    uint8_t image_id[16];
    uint32_t version;
    uint32_t guest_svn;
    uint32_t id_key_algorithm;
    uint32_t author_key_algorithm;
    IGVM_VHS_SNP_ID_BLOCK_SIGNATURE id_key_signature;
    IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY id_public_key;
    IGVM_VHS_SNP_ID_BLOCK_SIGNATURE author_key_signature;
    IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY author_public_key;
} IGVM_VHS_SNP_ID_BLOCK;

/* 864 bytes. */
typedef struct IGVM_VHS_VBS_MEASUREMENT {
    uint32_t compatibility_mask;
    uint32_t version;
    uint32_t product_id;
    uint32_t module_id;
    uint32_t security_version;
    uint32_t policy_flags;
    uint32_t boot_digest_algo;
    uint32_t signing_algo;
    uint8_t boot_measurement_digest[64];
    uint8_t signature[256];
    uint8_t public_key[512];
} IGVM_VHS_VBS_MEASUREMENT;

/* 24 bytes: one entry of an IGVM_VHT_MEMORY_MAP parameter. */
typedef struct IGVM_VHS_MEMORY_MAP_ENTRY {
    uint64_t starting_gpa_page_number;
    uint64_t number_of_pages;
    IgvmMemoryMapEntryType entry_type;
    uint16_t flags;
    uint32_t reserved;
} IGVM_VHS_MEMORY_MAP_ENTRY;

/* 16 bytes. */
typedef struct IGVM_VHS_ERROR_RANGE {
    uint64_t gpa;
    uint32_t compatibility_mask;
    uint32_t size_bytes;
} IGVM_VHS_ERROR_RANGE;

#endif /* IGVM_DEFS_H */
