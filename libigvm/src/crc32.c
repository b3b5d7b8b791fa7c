/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * CRC-32 as used by the IGVM fixed header checksum: the IEEE 802.3 CRC
 * (reflected polynomial 0xEDB88320, initial value and final XOR 0xFFFFFFFF),
 * the same function as zlib's crc32().  Table-driven; the table is rebuilt
 * on every call (2 KiB of work) so that there is no shared state to guard.
 */
#include "internal.h"

static void crc_table_init(uint32_t crc_table[256])
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1u) ? (0xEDB88320u ^ (c >> 1)) : (c >> 1);
        }
        crc_table[i] = c;
    }
}

/* `crc` is a finished CRC of the preceding bytes (0 for none). */
uint32_t igvm_crc32_update(uint32_t crc, const uint8_t *data, size_t len)
{
    uint32_t crc_table[256];

    crc_table_init(crc_table);
    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc = crc_table[(crc ^ data[i]) & 0xFFu] ^ (crc >> 8);
    }
    return ~crc;
}

uint32_t igvm_crc32(const uint8_t *data, size_t len)
{
    return igvm_crc32_update(0, data, len);
}
