/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * A tiny IGVM file writer for the C tests.  It knows the byte layout from the
 * specification and nothing of the library under test: its own bitwise
 * CRC-32 (checked against the standard check value in the tests), explicit
 * little-endian encoding, and raw control over every field so that tests
 * can write malformed files.
 */
#ifndef FILEBUILDER_H
#define FILEBUILDER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FB_MAX_VH 65536
#define FB_MAX_DATA (1 << 20)
#define FB_MAX_PATCHES 256

struct fb {
    uint32_t version;   /* fixed header format_version */
    uint32_t arch;      /* version 2: 0 x64, 1 aarch64 */
    uint32_t page_size; /* version 2 */
    uint8_t vh[FB_MAX_VH];
    size_t vh_len;
    uint8_t data[FB_MAX_DATA];
    size_t data_len;
    struct {
        size_t at;   /* byte position in vh of a u32 file offset field */
        size_t rel;  /* offset of the data within the data section */
    } patches[FB_MAX_PATCHES];
    size_t patch_count;
};

static inline void fb_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void fb_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static inline void fb_put64(uint8_t *p, uint64_t v)
{
    fb_put32(p, (uint32_t)v);
    fb_put32(p + 4, (uint32_t)(v >> 32));
}

static inline uint32_t fb_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

/* CRC-32/ISO-HDLC straight from its definition, one bit at a time. */
static inline uint32_t fb_crc32(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

static inline void fb_init(struct fb *f)
{
    memset(f, 0, sizeof(*f));
    f->version = 1;
    f->page_size = 4096;
}

/* Append a type/length prefix and `body_len` bytes, then zero padding to 8. */
static inline size_t fb_raw(struct fb *f, uint32_t type, uint32_t length,
                            const void *body, size_t body_len, int pad)
{
    size_t at = f->vh_len;
    fb_put32(f->vh + at, type);
    fb_put32(f->vh + at + 4, length);
    memcpy(f->vh + at + 8, body, body_len);
    f->vh_len += 8 + body_len;
    if (pad) {
        while (f->vh_len % 8) {
            f->vh[f->vh_len++] = 0;
        }
    }
    return at + 8; /* position of the body */
}

/* A well-formed header: length = body_len, padded to 8. */
static inline size_t fb_hdr(struct fb *f, uint32_t type, const void *body, size_t body_len)
{
    return fb_raw(f, type, (uint32_t)body_len, body, body_len, 1);
}

/* Add file data; the u32 at vh[field_at] becomes its absolute file offset. */
static inline void fb_data(struct fb *f, size_t field_at, const void *data, size_t n)
{
    f->patches[f->patch_count].at = field_at;
    f->patches[f->patch_count].rel = f->data_len;
    f->patch_count++;
    memcpy(f->data + f->data_len, data, n);
    f->data_len += n;
}

/* Point the u32 at vh[field_at] at data already added at `rel` (shared data). */
static inline void fb_data_shared(struct fb *f, size_t field_at, size_t rel)
{
    f->patches[f->patch_count].at = field_at;
    f->patches[f->patch_count].rel = rel;
    f->patch_count++;
}

/* Append file data nothing refers to (so that the data section is not empty). */
static inline void fb_tail(struct fb *f, size_t n)
{
    memset(f->data + f->data_len, 0xEE, n);
    f->data_len += n;
}

static inline size_t fb_fixed_size(const struct fb *f)
{
    return f->version == 2 ? 32 : 24;
}

/*
 * Assemble the file into a malloc'd buffer.  The checksum covers the fixed
 * header (checksum field zero) and the variable headers.
 */
static inline uint8_t *fb_finish(struct fb *f, uint32_t *len)
{
    size_t fixed = fb_fixed_size(f);
    size_t total = fixed + f->vh_len + f->data_len;
    uint8_t *out = calloc(1, total ? total : 1);

    for (size_t i = 0; i < f->patch_count; i++) {
        fb_put32(f->vh + f->patches[i].at,
                 (uint32_t)(fixed + f->vh_len + f->patches[i].rel));
    }
    fb_put32(out, 0x4D564749u);
    fb_put32(out + 4, f->version);
    fb_put32(out + 8, (uint32_t)fixed);
    fb_put32(out + 12, (uint32_t)f->vh_len);
    fb_put32(out + 16, (uint32_t)total);
    if (f->version == 2) {
        fb_put32(out + 24, f->arch);
        fb_put32(out + 28, f->page_size);
    }
    memcpy(out + fixed, f->vh, f->vh_len);
    memcpy(out + fixed + f->vh_len, f->data, f->data_len);
    fb_put32(out + 20, fb_crc32(0, out, fixed + f->vh_len));
    *len = (uint32_t)total;
    return out;
}

/* Recompute the checksum of an assembled file after a test edited it. */
static inline void fb_reseal(uint8_t *file)
{
    uint32_t fixed = fb_get32(file + 4) == 2 ? 32 : 24;
    fb_put32(file + 20, 0);
    fb_put32(file + 20, fb_crc32(0, file, fixed + fb_get32(file + 12)));
}

/* ---- typed helpers (layouts from the IGVM specification) ---------------- */

static inline void fb_platform(struct fb *f, uint32_t mask, uint8_t vtl, uint8_t type,
                               uint16_t version, uint64_t shared_gpa_boundary)
{
    uint8_t b[16] = {0};
    fb_put32(b, mask);
    b[4] = vtl;
    b[5] = type;
    fb_put16(b + 6, version);
    fb_put64(b + 8, shared_gpa_boundary);
    fb_hdr(f, 0x1, b, 16);
}

/* Page data; data == NULL means a zero page (file_offset 0). */
static inline void fb_page(struct fb *f, uint64_t gpa, uint32_t mask, uint32_t flags,
                           uint16_t data_type, const uint8_t *data)
{
    uint8_t b[24] = {0};
    fb_put64(b, gpa);
    fb_put32(b + 8, mask);
    fb_put32(b + 16, flags);
    fb_put16(b + 20, data_type);
    size_t at = fb_hdr(f, 0x302, b, 24);
    if (data) {
        fb_data(f, at + 12, data, 4096);
    }
}

static inline void fb_guest_policy(struct fb *f, uint64_t policy, uint32_t mask,
                                   uint32_t reserved)
{
    uint8_t b[16] = {0};
    fb_put64(b, policy);
    fb_put32(b + 8, mask);
    fb_put32(b + 12, reserved);
    fb_hdr(f, 0x101, b, 16);
}

static inline void fb_param_area(struct fb *f, uint64_t nbytes, uint32_t index)
{
    uint8_t b[16] = {0};
    fb_put64(b, nbytes);
    fb_put32(b + 8, index);
    fb_hdr(f, 0x301, b, 16);
}

static inline void fb_param(struct fb *f, uint32_t type, uint32_t index, uint32_t offset)
{
    uint8_t b[8];
    fb_put32(b, index);
    fb_put32(b + 4, offset);
    fb_hdr(f, type, b, 8);
}

static inline void fb_param_insert(struct fb *f, uint64_t gpa, uint32_t mask, uint32_t index)
{
    uint8_t b[16];
    fb_put64(b, gpa);
    fb_put32(b + 8, mask);
    fb_put32(b + 12, index);
    fb_hdr(f, 0x303, b, 16);
}

/* VP context with one page of context data. */
static inline void fb_vp_context(struct fb *f, uint64_t gpa, uint32_t mask, uint16_t vp_index,
                                 const uint8_t *page)
{
    uint8_t b[20] = {0};
    fb_put64(b, gpa);
    fb_put32(b + 8, mask);
    fb_put16(b + 16, vp_index);
    size_t at = fb_hdr(f, 0x304, b, 20);
    fb_data(f, at + 12, page, 4096);
}

static inline void fb_required_memory(struct fb *f, uint64_t gpa, uint32_t mask,
                                      uint32_t nbytes, uint32_t flags)
{
    uint8_t b[24] = {0};
    fb_put64(b, gpa);
    fb_put32(b + 8, mask);
    fb_put32(b + 12, nbytes);
    fb_put32(b + 16, flags);
    fb_hdr(f, 0x305, b, 24);
}

#endif /* FILEBUILDER_H */
