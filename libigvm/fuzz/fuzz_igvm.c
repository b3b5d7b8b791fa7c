/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * libFuzzer target for libigvm: parse the input as an IGVM file and, when it
 * is accepted, fetch every header and its data through the public API the
 * way QEMU's backends/igvm.c does (count, type, header, data, free), so the
 * sanitizers see every read the parser and the accessors make.
 *
 *   make -C libigvm fuzz BUILDDIR=dir     (clang, libFuzzer, ASan, UBSan)
 *   dir/fuzz-igvm -max_total_time=60 CORPUS            (see the README's Fuzzing section)
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "igvm/igvm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > UINT32_MAX) {
        return 0;
    }
    IgvmHandle h = igvm_new_from_binary(data, (uint32_t)size);
    if (h <= 0) {
        return 0;
    }
    volatile uint8_t sink = 0;
    for (IgvmHeaderSection sec = IGVM_HEADER_SECTION_PLATFORM;
         sec <= IGVM_HEADER_SECTION_DIRECTIVE; sec++) {
        int32_t count = igvm_header_count(h, sec);
        for (int32_t i = 0; i < count; i++) {
            (void)igvm_get_header_type(h, sec, (uint32_t)i);
            IgvmHandle b = igvm_get_header(h, sec, (uint32_t)i);
            if (b > 0) {
                const uint8_t *p = igvm_get_buffer(h, b);
                int32_t n = igvm_get_buffer_size(h, b);
                if (p && n > 0) {
                    sink ^= p[0] ^ p[n - 1];
                }
                igvm_free_buffer(h, b);
            }
            IgvmHandle d = igvm_get_header_data(h, sec, (uint32_t)i);
            if (d > 0) {
                const uint8_t *p = igvm_get_buffer(h, d);
                int32_t n = igvm_get_buffer_size(h, d);
                if (p && n > 0) {
                    sink ^= p[0] ^ p[n - 1];
                }
                igvm_free_buffer(h, d);
            }
        }
        /* out-of-range indices must be refused, never read */
        (void)igvm_get_header_type(h, sec, (uint32_t)count);
        (void)igvm_get_header(h, sec, (uint32_t)count);
    }
    (void)sink;
    igvm_free(h);
    return 0;
}
