/*
 * _snpfold: the SEV-SNP launch digest chain over NORMAL pages, in C.
 *
 * Written for igvm-harness from the PAGE_INFO layout of the SNP Firmware ABI
 * (SNP_LAUNCH_UPDATE), as documented in harness/measure/measure_snp.py:
 *
 *   0x00 DIGEST_CUR[48] | 0x30 CONTENTS[48] | 0x60 LENGTH u16 = 0x70 |
 *   0x62 PAGE_TYPE u8 (NORMAL = 1) | 0x63 IMI_PAGE u8 = 0 |
 *   0x64 VMPL3/2/1 perms u8 x3 = 0 | 0x67 reserved | 0x68 GPA u64
 *
 *   LD' = SHA-384(PAGE_INFO), CONTENTS = SHA-384(4 KiB page).
 *
 * Why C: in CPython each hashlib call costs ~0.5 us of object and EVP
 * context overhead, two per page; here a page costs its 35 SHA-384 blocks
 * and nothing else, and the GIL is released while hashing, so content
 * hashing scales over threads.
 *
 * Pages arrive as a Python sequence of "items" of page_size bytes each
 * (page_size a multiple of 4 KiB): a buffer of at most page_size bytes
 * (zero-padded to page_size, as QEMU pads short IGVM page data) or None
 * (page_size bytes of zeros).  Every length and index comes from Python
 * objects already in memory; nothing here allocates: buffers are held a
 * chunk at a time in a fixed array on the stack, outputs are caller-owned.
 *
 * SHA-384 is libcrypto's low-level SHA384_Init/Update/Final: the same
 * block function hashlib's OpenSSL uses, without the per-call EVP cost.
 * They are deprecated in OpenSSL 3.0 but part of libcrypto.so.3's ABI.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/opensslv.h>
#include <openssl/sha.h>

#include <stdint.h>
#include <string.h>

#define PAGE 4096
#define LD 48
#define INFO_LEN 0x70
#define NORMAL 1
/* Items whose buffers are held across one GIL release, and the 4 KiB units
 * after which a chunk ends: ~1 MiB of hashing per GIL round trip, so the
 * GIL is taken a few hundred times a second, not once per page. */
#define CHUNK_ITEMS 256
#define CHUNK_UNITS 256
/* The largest page_size accepted (IGVM pages are 4 KiB or 2 MiB). */
#define MAX_PAGE_SIZE (1 << 30)

static unsigned char zero_page[PAGE];
static unsigned char zero_hash[LD];

static void sha384(const void *data, size_t len, unsigned char out[LD])
{
    SHA512_CTX c;

    SHA384_Init(&c);
    SHA384_Update(&c, data, len);
    SHA384_Final(out, &c);
}

/* Where hashed CONTENTS go: folded into the chain, or stored in order. */
struct sink {
    unsigned char info[INFO_LEN]; /* chain: DIGEST_CUR | CONTENTS | header | GPA */
    uint64_t gpa;                 /* chain: GPA of the next page */
    unsigned char *out;           /* contents: next 48-byte slot, or NULL to chain */
};

static void sink_init_chain(struct sink *s, const unsigned char ld[LD], uint64_t gpa)
{
    memset(s->info, 0, sizeof(s->info));
    memcpy(s->info, ld, LD);
    s->info[0x60] = INFO_LEN & 0xff; /* LENGTH, little endian */
    s->info[0x61] = INFO_LEN >> 8;
    s->info[0x62] = NORMAL;          /* PAGE_TYPE; IMI and VMPL perms stay 0 */
    s->gpa = gpa;
    s->out = NULL;
}

static inline void put_gpa(unsigned char *p, uint64_t gpa)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(gpa >> (8 * i));
}

/* One chain step over CONTENTS already in s->info[0x30..0x60). */
static inline void chain_step(struct sink *s)
{
    put_gpa(s->info + 0x68, s->gpa);
    sha384(s->info, INFO_LEN, s->info); /* LD' overwrites DIGEST_CUR */
    s->gpa += PAGE;
}

/* Slot for the next page's CONTENTS. */
static inline unsigned char *slot(struct sink *s)
{
    return s->out ? s->out : s->info + LD;
}

static inline void emit(struct sink *s)
{
    if (s->out)
        s->out += LD;
    else
        chain_step(s);
}

static void emit_zero(struct sink *s)
{
    memcpy(slot(s), zero_hash, LD);
    emit(s);
}

/* All 4 KiB units of one item: data (len <= page_size) then zero padding. */
static void do_item(struct sink *s, const unsigned char *buf, Py_ssize_t len, Py_ssize_t page_size)
{
    Py_ssize_t off = 0;

    for (; off + PAGE <= len; off += PAGE) {
        sha384(buf + off, PAGE, slot(s));
        emit(s);
    }
    if (off < len) {
        unsigned char pad[PAGE];

        memcpy(pad, buf + off, (size_t)(len - off));
        memset(pad + (len - off), 0, (size_t)(PAGE - (len - off)));
        sha384(pad, PAGE, slot(s));
        emit(s);
        off += PAGE;
    }
    for (; off < page_size; off += PAGE)
        emit_zero(s);
}

/* Parsed common arguments of contents() and chain(). */
struct run {
    PyObject *pages;
    Py_ssize_t page_size, start, stop;
};

static int check_run(struct run *r)
{
    Py_ssize_t n;

    if (r->page_size <= 0 || r->page_size % PAGE || r->page_size > MAX_PAGE_SIZE) {
        PyErr_Format(PyExc_ValueError, "page_size %zd is not a multiple of 4096 up to 1 GiB",
                     r->page_size);
        return -1;
    }
    n = PySequence_Size(r->pages);
    if (n < 0)
        return -1;
    if (r->stop < 0 || r->stop > n)
        r->stop = n;
    if (r->start < 0 || r->start > r->stop) {
        PyErr_Format(PyExc_IndexError, "start %zd outside 0..%zd", r->start, r->stop);
        return -1;
    }
    return 0;
}

/* Hash items [start, stop) into the sink, CHUNK_ITEMS buffers at a time,
 * the GIL released while hashing; Ctrl-C is seen between chunks. */
static int run_items(struct run *r, struct sink *s)
{
    Py_buffer views[CHUNK_ITEMS];
    char is_data[CHUNK_ITEMS];
    Py_ssize_t i = r->start;
    Py_ssize_t units_per_item = r->page_size / PAGE;

    while (i < r->stop) {
        int n = 0, err = 0;
        Py_ssize_t units = 0;

        while (i < r->stop && n < CHUNK_ITEMS && (n == 0 || units < CHUNK_UNITS)) {
            PyObject *item = PySequence_GetItem(r->pages, i);

            if (!item) {
                err = 1;
                break;
            }
            if (item == Py_None) {
                is_data[n] = 0;
                views[n].buf = NULL;
                views[n].len = 0;
            } else if (PyObject_GetBuffer(item, &views[n], PyBUF_SIMPLE) < 0) {
                err = 1;
            } else if (views[n].len > r->page_size) {
                PyErr_Format(PyExc_ValueError, "page data of %zd bytes exceeds the page size %zd",
                             views[n].len, r->page_size);
                PyBuffer_Release(&views[n]);
                err = 1;
            } else {
                is_data[n] = 1;
            }
            Py_DECREF(item);
            if (err)
                break;
            n++;
            i++;
            units += units_per_item;
        }
        if (n && !err) {
            Py_BEGIN_ALLOW_THREADS
            for (int k = 0; k < n; k++)
                do_item(s, views[k].buf, views[k].len, r->page_size);
            Py_END_ALLOW_THREADS
        }
        for (int k = 0; k < n; k++)
            if (is_data[k])
                PyBuffer_Release(&views[k]);
        if (err || PyErr_CheckSignals() < 0)
            return -1;
    }
    return 0;
}

/* "O&" converter: a Python int in 0 .. 2^64-1 (PyArg's "K" would wrap). */
static int get_u64(PyObject *obj, void *out)
{
    unsigned long long v = PyLong_AsUnsignedLongLong(obj);

    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return 0;
    *(uint64_t *)out = v;
    return 1;
}

static int get_ld(PyObject *obj, unsigned char ld[LD])
{
    Py_buffer v;

    if (PyObject_GetBuffer(obj, &v, PyBUF_SIMPLE) < 0)
        return -1;
    if (v.len != LD) {
        PyErr_Format(PyExc_ValueError, "launch digest must be %d bytes, got %zd", LD, v.len);
        PyBuffer_Release(&v);
        return -1;
    }
    memcpy(ld, v.buf, LD);
    PyBuffer_Release(&v);
    return 0;
}

/* The GPA of the page after `units` pages from `gpa` must still fit 64 bits
 * less one page, as PAGE_INFO's u64 GPA field of the last page must. */
static int check_gpa(uint64_t gpa, uint64_t units)
{
    if (units && (units > (UINT64_MAX >> 12) || gpa > UINT64_MAX - (units - 1) * PAGE)) {
        PyErr_SetString(PyExc_OverflowError, "GPA of a page beyond 2^64");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(chain_doc,
"chain(ld, gpa, pages, page_size, start=0, stop=len(pages)) -> bytes\n\n"
"The launch digest after the NORMAL pages of pages[start:stop] from gpa.");

static PyObject *py_chain(PyObject *self, PyObject *args)
{
    PyObject *ld_obj;
    uint64_t gpa;
    struct run r = {.start = 0, .stop = PY_SSIZE_T_MAX};
    struct sink s;
    unsigned char ld[LD];

    (void)self;
    if (!PyArg_ParseTuple(args, "OO&On|nn:chain", &ld_obj, get_u64, &gpa, &r.pages, &r.page_size,
                          &r.start, &r.stop))
        return NULL;
    if (get_ld(ld_obj, ld) < 0 || check_run(&r) < 0)
        return NULL;
    if ((uint64_t)(r.stop - r.start) > UINT64_MAX / (uint64_t)(r.page_size / PAGE)
        || check_gpa(gpa, (uint64_t)(r.stop - r.start) * (uint64_t)(r.page_size / PAGE)) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_OverflowError, "GPA of a page beyond 2^64");
        return NULL;
    }
    sink_init_chain(&s, ld, gpa);
    if (run_items(&r, &s) < 0)
        return NULL;
    return PyBytes_FromStringAndSize((const char *)s.info, LD);
}

PyDoc_STRVAR(contents_doc,
"contents(pages, page_size, start, stop, out) -> None\n\n"
"CONTENTS (SHA-384) of every 4 KiB unit of pages[start:stop], written in order\n"
"into the writable buffer out, which must be exactly 48 bytes per unit.");

static PyObject *py_contents(PyObject *self, PyObject *args)
{
    PyObject *out_obj;
    struct run r;
    struct sink s;
    Py_buffer out;
    Py_ssize_t need;
    int rc;

    (void)self;
    if (!PyArg_ParseTuple(args, "OnnnO:contents", &r.pages, &r.page_size, &r.start, &r.stop, &out_obj))
        return NULL;
    if (check_run(&r) < 0)
        return NULL;
    if (PyObject_GetBuffer(out_obj, &out, PyBUF_WRITABLE) < 0)
        return NULL;
    need = r.stop - r.start;
    if (need > PY_SSIZE_T_MAX / LD / (r.page_size / PAGE)
        || out.len != need * (r.page_size / PAGE) * LD) {
        PyErr_Format(PyExc_ValueError, "out has %zd bytes; %zd items of %zd bytes need 48 per 4 KiB",
                     out.len, need, r.page_size);
        PyBuffer_Release(&out);
        return NULL;
    }
    memset(&s, 0, sizeof(s));
    s.out = out.buf;
    rc = run_items(&r, &s);
    PyBuffer_Release(&out);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(fold_doc,
"fold(ld, gpa, contents) -> bytes\n\n"
"The launch digest after NORMAL pages from gpa whose CONTENTS (48 bytes each,\n"
"in page order) are the buffer contents.");

static PyObject *py_fold(PyObject *self, PyObject *args)
{
    PyObject *ld_obj, *c_obj;
    uint64_t gpa;
    Py_buffer c;
    struct sink s;
    unsigned char ld[LD];
    Py_ssize_t n;

    (void)self;
    if (!PyArg_ParseTuple(args, "OO&O:fold", &ld_obj, get_u64, &gpa, &c_obj))
        return NULL;
    if (get_ld(ld_obj, ld) < 0)
        return NULL;
    if (PyObject_GetBuffer(c_obj, &c, PyBUF_SIMPLE) < 0)
        return NULL;
    if (c.len % LD) {
        PyErr_Format(PyExc_ValueError, "contents has %zd bytes, not a multiple of 48", c.len);
        PyBuffer_Release(&c);
        return NULL;
    }
    n = c.len / LD;
    if (check_gpa(gpa, (uint64_t)n) < 0) {
        PyBuffer_Release(&c);
        return NULL;
    }
    sink_init_chain(&s, ld, gpa);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < n; k++) {
        memcpy(s.info + LD, (const unsigned char *)c.buf + k * LD, LD);
        chain_step(&s);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&c);
    return PyBytes_FromStringAndSize((const char *)s.info, LD);
}

static PyMethodDef methods[] = {
    {"chain", py_chain, METH_VARARGS, chain_doc},
    {"contents", py_contents, METH_VARARGS, contents_doc},
    {"fold", py_fold, METH_VARARGS, fold_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_snpfold",
    "SEV-SNP PAGE_INFO chain over NORMAL pages (igvm-harness, libcrypto SHA-384).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__snpfold(void)
{
    PyObject *m = PyModule_Create(&module);

    if (!m)
        return NULL;
    sha384(zero_page, PAGE, zero_hash);
    if (PyModule_AddStringConstant(m, "OPENSSL_VERSION", OPENSSL_VERSION_TEXT) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
