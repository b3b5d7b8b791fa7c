/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The handle-based igvm C API (igvm.h), with the semantics of the reference
 * C library: file and buffer handles come from one process-wide counter
 * starting at 1; buffers belong to the file they were obtained from and live
 * until igvm_free_buffer() or igvm_free(); errors are negative IgvmResult
 * values.  A spin lock built on a C11 atomic flag guards the handle table, so
 * the library needs nothing beyond libc.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#ifndef LIBIGVM_VERSION
#define LIBIGVM_VERSION "unknown"
#endif

/* Names this library inside a program that links it statically (QEMU):
 * `igvm-harness qemu probe` finds the string in the binary when the binary
 * carries no build record of the harness. */
const char igvm_harness_libigvm_ident[] = "igvm-harness own libigvm " LIBIGVM_VERSION;

struct buffer {
    IgvmHandle handle;
    uint8_t *bytes;
    int32_t len;
};

struct instance {
    IgvmHandle handle;
    struct igvm_file *file;
    struct buffer *buffers;
    size_t buffer_count;
};

static atomic_flag table_lock = ATOMIC_FLAG_INIT;
static struct instance *instances;
static size_t instance_count;
static IgvmHandle next_handle = 1;

static void lock(void)
{
    while (atomic_flag_test_and_set_explicit(&table_lock, memory_order_acquire)) {
        /* spin: critical sections are short */
    }
}

static void unlock(void)
{
    atomic_flag_clear_explicit(&table_lock, memory_order_release);
}

static IgvmHandle new_handle(void)
{
    return next_handle++;
}

static struct instance *find_instance(IgvmHandle handle)
{
    for (size_t i = 0; i < instance_count; i++) {
        if (instances[i].handle == handle) {
            return &instances[i];
        }
    }
    return NULL;
}

static struct buffer *find_buffer(struct instance *inst, IgvmHandle handle)
{
    for (size_t i = 0; i < inst->buffer_count; i++) {
        if (inst->buffers[i].handle == handle) {
            return &inst->buffers[i];
        }
    }
    return NULL;
}

IgvmHandle igvm_new_from_binary(const uint8_t *data, uint32_t len)
{
    struct igvm_file *file = NULL;
    IgvmResult rc = igvm_parse(data, len, &file, NULL);

    if (rc != IGVMAPI_OK) {
        return rc;
    }
    lock();
    struct instance *n = realloc(instances, (instance_count + 1) * sizeof(*n));
    if (!n) {
        unlock();
        igvm_file_destroy(file);
        return IGVMAPI_INVALID_FILE;
    }
    instances = n;
    IgvmHandle handle = new_handle();
    instances[instance_count].handle = handle;
    instances[instance_count].file = file;
    instances[instance_count].buffers = NULL;
    instances[instance_count].buffer_count = 0;
    instance_count++;
    unlock();
    return handle;
}

void igvm_free(IgvmHandle handle)
{
    struct instance victim;

    lock();
    struct instance *inst = find_instance(handle);
    if (!inst) {
        unlock();
        return;
    }
    victim = *inst;
    *inst = instances[--instance_count];
    unlock();
    for (size_t i = 0; i < victim.buffer_count; i++) {
        free(victim.buffers[i].bytes);
    }
    free(victim.buffers);
    igvm_file_destroy(victim.file);
}

/* Look up a header; the caller holds the lock. */
static IgvmResult lookup(IgvmHandle handle, IgvmHeaderSection section, uint32_t index,
                         struct instance **inst_out, struct igvm_header **h_out)
{
    struct instance *inst = find_instance(handle);
    if (!inst) {
        return IGVMAPI_INVALID_HANDLE;
    }
    if (section > IGVM_HEADER_SECTION_DIRECTIVE) {
        return IGVMAPI_INVALID_PARAMETER;
    }
    struct igvm_section *sec = &inst->file->sections[section];
    if (index >= sec->count) {
        return IGVMAPI_INVALID_PARAMETER;
    }
    *inst_out = inst;
    *h_out = &sec->headers[index];
    return IGVMAPI_OK;
}

int32_t igvm_header_count(IgvmHandle handle, IgvmHeaderSection section)
{
    int32_t rc;

    lock();
    struct instance *inst = find_instance(handle);
    if (!inst) {
        rc = IGVMAPI_INVALID_HANDLE;
    } else if (section > IGVM_HEADER_SECTION_DIRECTIVE) {
        rc = IGVMAPI_INVALID_PARAMETER;
    } else {
        rc = (int32_t)inst->file->sections[section].count;
    }
    unlock();
    return rc;
}

int32_t igvm_get_header_type(IgvmHandle handle, IgvmHeaderSection section, uint32_t index)
{
    struct instance *inst;
    struct igvm_header *h;

    lock();
    IgvmResult rc = lookup(handle, section, index, &inst, &h);
    int32_t type = rc == IGVMAPI_OK ? (int32_t)h->type : rc;
    unlock();
    return type;
}

/* Add a copy of bytes as a new buffer of inst; the caller holds the lock. */
static IgvmHandle add_buffer(struct instance *inst, const uint8_t *bytes, uint32_t len)
{
    struct buffer *n = realloc(inst->buffers, (inst->buffer_count + 1) * sizeof(*n));
    if (!n) {
        return IGVMAPI_INVALID_FILE;
    }
    inst->buffers = n;
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) {
        return IGVMAPI_INVALID_FILE;
    }
    memcpy(copy, bytes, len);
    IgvmHandle handle = new_handle();
    n[inst->buffer_count].handle = handle;
    n[inst->buffer_count].bytes = copy;
    n[inst->buffer_count].len = (int32_t)len;
    inst->buffer_count++;
    return handle;
}

IgvmHandle igvm_get_header(IgvmHandle handle, IgvmHeaderSection section, uint32_t index)
{
    struct instance *inst;
    struct igvm_header *h;

    lock();
    IgvmResult rc = lookup(handle, section, index, &inst, &h);
    if (rc == IGVMAPI_OK) {
        rc = h->unserialisable ? IGVMAPI_INVALID_FILE : add_buffer(inst, h->hdr, h->hdr_len);
    }
    unlock();
    return rc;
}

IgvmHandle igvm_get_header_data(IgvmHandle handle, IgvmHeaderSection section, uint32_t index)
{
    struct instance *inst;
    struct igvm_header *h;

    lock();
    IgvmResult rc = lookup(handle, section, index, &inst, &h);
    if (rc == IGVMAPI_OK) {
        if (section == IGVM_HEADER_SECTION_PLATFORM) {
            rc = IGVMAPI_INVALID_PARAMETER;
        } else if (h->unserialisable) {
            rc = IGVMAPI_INVALID_FILE;
        } else if (h->data_len == 0) {
            rc = IGVMAPI_NO_DATA;
        } else {
            rc = add_buffer(inst, h->data, h->data_len);
        }
    }
    unlock();
    return rc;
}

const uint8_t *igvm_get_buffer(IgvmHandle igvm_handle, IgvmHandle buffer_handle)
{
    const uint8_t *p = NULL;

    lock();
    struct instance *inst = find_instance(igvm_handle);
    struct buffer *b = inst ? find_buffer(inst, buffer_handle) : NULL;
    if (b) {
        p = b->bytes;
    }
    unlock();
    return p;
}

int32_t igvm_get_buffer_size(IgvmHandle igvm_handle, IgvmHandle buffer_handle)
{
    int32_t len = IGVMAPI_INVALID_HANDLE;

    lock();
    struct instance *inst = find_instance(igvm_handle);
    struct buffer *b = inst ? find_buffer(inst, buffer_handle) : NULL;
    if (b) {
        len = b->len;
    }
    unlock();
    return len;
}

void igvm_free_buffer(IgvmHandle igvm_handle, IgvmHandle buffer_handle)
{
    uint8_t *bytes = NULL;

    lock();
    struct instance *inst = find_instance(igvm_handle);
    struct buffer *b = inst ? find_buffer(inst, buffer_handle) : NULL;
    if (b) {
        bytes = b->bytes;
        *b = inst->buffers[--inst->buffer_count];
    }
    unlock();
    free(bytes);
}
