"""SEV-SNP launch digest: the SHA-384 PAGE_INFO chain.

SEV-SNP Firmware ABI spec, SNP_LAUNCH_UPDATE ("PAGE_INFO structure"): for every
4 KiB page the firmware computes ``LD' = SHA-384(PAGE_INFO)`` where PAGE_INFO is

    0x00 DIGEST_CUR[48] | 0x30 CONTENTS[48] | 0x60 LENGTH u16 = 0x70 |
    0x62 PAGE_TYPE u8 | 0x63 IMI_PAGE u8 | 0x64 VMPL3/2/1 perms u8 x3 | 0x67 rsvd |
    0x68 GPA u64

CONTENTS is SHA-384 of the page for NORMAL and VMSA pages and zero for the
others.  For VMSA pages the firmware ignores GUEST_TSC_SCALE (0x2F0) and
GUEST_TSC_OFFSET (0x2F8): they are zeroed before hashing (the same rule is
implemented by independent SNP measurement tools).

Runs of NORMAL pages -- nearly all of an image's hashing -- go to the C fold
of ``harness/native/snpfold.c`` when set-up built it (``igvm-harness native
build``): one call per run or per 2 MiB batch, the GIL released, libcrypto's
SHA-384 with no per-page Python cost.  Without it the same chain runs in
Python with hashlib (``IGVM_HARNESS_NATIVE=0`` forces that); both paths give
the same digests (tests/measure/test_snp_fold.py).
"""

from __future__ import annotations

import hashlib
import os
import struct
from enum import IntEnum
from collections.abc import Callable

from harness.errors import HarnessError

PAGE_4K = 0x1000
LD_SIZE = 48
PAGE_INFO_LEN = 0x70
#: KVM puts every VMSA in the RMP at GPA (u64)-1 truncated to 52 bits, page aligned.
VMSA_GPA = 0xFFFFFFFFF000
#: VMSA byte range the firmware zeroes before hashing (GUEST_TSC_SCALE, GUEST_TSC_OFFSET).
VMSA_TSC_FIELDS = (0x2F0, 0x300)
_ZERO_LD = bytes(LD_SIZE)
_NORMAL_HEAD = struct.pack("<HBBBBBB", PAGE_INFO_LEN, 1, 0, 0, 0, 0, 0)  # length, NORMAL, IMI, VMPL perms
_INFO_TAIL = struct.Struct("<8sQ")
_ZERO_PAGE_HASH = hashlib.sha384(bytes(PAGE_4K)).digest()
#: Pages per unit of work handed to a thread (1 MiB of page data): large
#: enough that claiming one costs nothing next to hashing it, small enough
#: that the last ones balance the threads.
_BATCH = 256
#: Threads hashing page contents for long NORMAL runs, this one included
#: (1 = everything on the calling thread).
DEFAULT_WORKERS = min(2, os.cpu_count() or 1)
#: 4 KiB units from which a run uses the C fold: loading it in a fresh
#: process (importing harness.native, hashing the source for the cache key,
#: dlopen) costs ~0.55 ms, which the fold wins back at 0.6-0.9 us a page
#: over ~600-900 pages; shorter runs stay in Python, so small files never
#: load it (CLI start-up: tests/cli/test_startup.py).
NATIVE_MIN_UNITS = 512
#: 4 KiB units per batch a thread hashes with the C fold (2 MiB): one GIL
#: round trip and one Event per ~0.6 ms of hashing.
_NATIVE_BATCH = 512
#: 4 KiB units from which the C fold hashes on ``workers`` threads (8 MiB,
#: ~10 ms on one thread): importing threading and starting a helper cost
#: ~1.5 ms, more than a second core saves on a 4 MiB firmware image.
NATIVE_THREADS_MIN_UNITS = 2048
#: 4 KiB units in one view handed to the chain for a long run of file data (2 MiB).
_CHUNK_UNITS = 512
#: Units of repeated CONTENTS folded per C call (their 48-byte hashes: 3 MiB).
_FOLD_UNITS = 1 << 16
#: ``IGVM_HARNESS_DEBUG`` set: one stderr line per run saying which chain path ran.
_DEBUG = bool(os.environ.get("IGVM_HARNESS_DEBUG"))
#: The C fold: None = not looked up yet, False = absent (harness.native says why).
_native = None


class SnpPageType(IntEnum):
    """PAGE_TYPE values of SNP_LAUNCH_UPDATE (SNP Firmware ABI, and KVM's KVM_SEV_SNP_PAGE_TYPE_*)."""

    NORMAL = 1
    VMSA = 2
    ZERO = 3
    UNMEASURED = 4
    SECRETS = 5
    CPUID = 6


class SnpLaunchDigest:
    """The running launch digest of one SNP guest context."""

    def __init__(self, seed: bytes = _ZERO_LD) -> None:
        if len(seed) != LD_SIZE:
            raise HarnessError(f"SNP launch digest seed must be {LD_SIZE} bytes")
        self._ld = bytes(seed)
        self.pages = 0  # number of PAGE_INFO updates, for reports
        #: NORMAL pages per chain path ("native", "native-threads", "python",
        #: "python-threads"): which code measured them (``--explain``, tests).
        self.paths: dict[str, int] = {}

    @property
    def ld(self) -> bytes:
        return self._ld

    def hexdigest(self) -> str:
        return self._ld.hex()

    def update(self, page_type: SnpPageType, gpa: int, contents: bytes = _ZERO_LD) -> None:
        """One PAGE_INFO step (VMPL permissions and IMI are 0 for a KVM launch)."""
        info = (self._ld + contents
                + struct.pack("<HBBBBBBQ", PAGE_INFO_LEN, int(page_type), 0, 0, 0, 0, 0, gpa))
        self._ld = hashlib.sha384(info).digest()
        self.pages += 1

    def normal_pages(self, gpa: int, data: bytes | bytearray | memoryview) -> None:
        """Measure ``data`` (a whole number of pages) as NORMAL pages from ``gpa``."""
        view = memoryview(data)
        if len(view) % PAGE_4K:
            raise HarnessError(f"SNP update of {len(view)} bytes is not a whole number of 4 KiB pages")
        self.normal_page_list(gpa, [view[off:off + PAGE_4K] for off in range(0, len(view), PAGE_4K)],
                              PAGE_4K)

    def normal_page_list(self, gpa: int, pages, page_size: int, workers: int | None = None) -> None:
        """NORMAL pages from a run of page data (None = zeros; short data zero-padded).

        The hot loop of an SNP prediction: one SHA-384 of each 4 KiB page (its
        CONTENTS) and one of each 0x70-byte PAGE_INFO.  Runs of at least
        NATIVE_MIN_UNITS pages go to the C fold (``harness.native``) when it
        is built, else to the pure-Python chain.  CONTENTS do not depend on
        the chain, so for long runs ``workers`` threads (this one included)
        hash them batch by batch -- both hashlib and the C fold release the
        GIL while they hash -- and this thread folds the chain in page order;
        ``workers=1`` keeps everything on this thread.  ``paths`` counts the
        pages each path measured.
        """
        if page_size <= 0 or page_size % PAGE_4K:
            raise HarnessError(f"SNP page size {page_size} is not a multiple of 4 KiB")
        if not hasattr(pages, "__len__"):
            pages = list(pages)
        count = len(pages) * (page_size // PAGE_4K)
        if workers is None:
            workers = DEFAULT_WORKERS
        fold = native_fold() if count >= NATIVE_MIN_UNITS else None
        if fold is not None:
            threaded = workers > 1 and count >= max(2 * _NATIVE_BATCH, NATIVE_THREADS_MIN_UNITS)
            try:
                if threaded:
                    self._ld = _native_parallel(fold, self._ld, gpa, pages, page_size, workers)
                else:
                    self._ld = fold.chain(self._ld, gpa, pages, page_size)
            except (ValueError, OverflowError) as exc:  # page data longer than its page, GPA > 2^64
                raise HarnessError(f"SNP update at GPA {gpa:#x}: {exc}") from None
            path = "native-threads" if threaded else "native"
        else:
            units = _page_units(pages, page_size, gpa)
            threaded = workers > 1 and count >= 2 * _BATCH
            if threaded:
                self._ld = _chain_parallel(self._ld, gpa, units, workers)
            else:
                self._ld = _chain(self._ld, gpa, units)
            path = "python-threads" if threaded else "python"
        self.pages += count
        self.paths[path] = self.paths.get(path, 0) + count
        if _DEBUG:
            _debug_line(path, gpa, count, workers if threaded else 1)

    def normal_segments(self, gpa: int, page_size: int, segments) -> None:
        """NORMAL pages of one launch update, from its ``(gpa, data, pages,
        repeat)`` stretches (harness.measure.pages.Update.segments), in order.

        A long run of file data goes to the chain in 2 MiB views (one C call
        each, or threads), not a view per page; pages that share one page of
        data (or zeros) hash it once and fold only their PAGE_INFOs; short
        stretches are gathered into one list of pages."""
        items: list = []
        items_gpa = gpa
        per = page_size // PAGE_4K
        for at, data, pages, repeat in segments:
            units = pages * per
            if (repeat and pages > 1 and (data is None or page_size == PAGE_4K)
                    or data is None and units >= NATIVE_MIN_UNITS):
                if items:
                    self.normal_page_list(items_gpa, items, page_size)
                    items = []
                self.repeated_pages(at, data, units)
            elif not repeat and units >= NATIVE_MIN_UNITS:
                if items:
                    self.normal_page_list(items_gpa, items, page_size)
                    items = []
                self.normal_run(at, data, units)
            else:
                if not items:
                    items_gpa = at
                if data is None or repeat:
                    items.extend([data] * pages)
                else:
                    items.extend(data[k * PAGE_4K:(k + 1) * PAGE_4K] for k in range(pages))
        if items:
            self.normal_page_list(items_gpa, items, page_size)

    def normal_run(self, gpa: int, data, units: int) -> None:
        """``units`` NORMAL pages whose data is ``data`` (``units`` * 4 KiB,
        contiguous), handed over in 2 MiB views: one C call each (or a
        batch a thread) instead of a view per page."""
        chunk = _CHUNK_UNITS * PAGE_4K
        full = units // _CHUNK_UNITS
        view = memoryview(data)
        if full:
            self.normal_page_list(gpa, [view[i * chunk:(i + 1) * chunk] for i in range(full)],
                                  chunk)
        rest = units - full * _CHUNK_UNITS
        if rest:
            self.normal_page_list(gpa + full * chunk, [view[full * chunk:]], rest * PAGE_4K)

    def repeated_pages(self, gpa: int, data, units: int) -> None:
        """``units`` NORMAL 4 KiB pages that all carry ``data`` (one page,
        zero-padded; None: zeros): CONTENTS is one hash, so only the PAGE_INFO
        chain is left to fold (in C when the run is long and the fold built)."""
        if data is None:
            contents = _ZERO_PAGE_HASH
        else:
            page = data if len(data) == PAGE_4K else bytes(_short(data, PAGE_4K, gpa)).ljust(
                PAGE_4K, b"\0")
            contents = hashlib.sha384(page).digest()
        fold = native_fold() if units >= NATIVE_MIN_UNITS else None
        if fold is not None:
            done = 0
            while done < units:  # bounded buffers: 48 bytes a unit, 3 MiB at most
                step = min(units - done, _FOLD_UNITS)
                try:
                    self._ld = fold.fold(self._ld, gpa + done * PAGE_4K, contents * step)
                except (ValueError, OverflowError) as exc:
                    raise HarnessError(f"SNP update at GPA {gpa:#x}: {exc}") from None
                done += step
            path = "native"
        else:
            import itertools

            self._ld = _fold(self._ld, gpa, itertools.repeat(contents, units))
            path = "python"
        self.pages += units
        self.paths[path] = self.paths.get(path, 0) + units
        if _DEBUG:
            _debug_line(path, gpa, units, 1)

    def normal_zero_pages(self, gpa: int, length: int) -> None:
        """NORMAL pages whose contents are zero (how QEMU measures IGVM zero pages)."""
        digest = hashlib.sha384(bytes(PAGE_4K)).digest()
        for off in range(0, _pages(length) * PAGE_4K, PAGE_4K):
            self.update(SnpPageType.NORMAL, gpa + off, digest)

    def typed_pages(self, page_type: SnpPageType, gpa: int, length: int) -> None:
        """ZERO / UNMEASURED / SECRETS / CPUID pages: CONTENTS is zero."""
        if page_type in (SnpPageType.NORMAL, SnpPageType.VMSA):
            raise HarnessError(f"{page_type.name} pages carry contents; use normal_pages/vmsa_page")
        for off in range(0, _pages(length) * PAGE_4K, PAGE_4K):
            self.update(page_type, gpa + off)

    def vmsa_page(self, vmsa: bytes, gpa: int = VMSA_GPA) -> None:
        if len(vmsa) != PAGE_4K:
            raise HarnessError(f"VMSA page must be 4096 bytes, got {len(vmsa)}")
        page = bytearray(vmsa)
        lo, hi = VMSA_TSC_FIELDS
        page[lo:hi] = bytes(hi - lo)
        self.update(SnpPageType.VMSA, gpa, hashlib.sha384(page).digest())


def native_fold():
    """The C fold module, or None when it is not built (looked up once)."""
    global _native
    if _native is None:
        from harness import native  # only for long runs (CLI start-up)

        _native = native.load("_snpfold") or False
    return _native or None


def chain_path_status() -> str:
    """One line: the chain path long runs take, and why (``--explain``, ``native status``)."""
    from harness import native

    mod, line = native.status("_snpfold")
    return (f"SNP chain: C fold for runs of >= {NATIVE_MIN_UNITS} pages ({line})" if mod is not None
            else f"SNP chain: pure Python ({line})")


def _debug_line(path: str, gpa: int, count: int, threads: int) -> None:
    import sys

    print(f"igvm-harness: SNP chain: {count} NORMAL pages from GPA {gpa:#x} by the "
          f"{'C fold' if path.startswith('native') else 'Python chain'}, {threads} thread(s)",
          file=sys.stderr)


def _pages(length: int) -> int:
    if length % PAGE_4K:
        raise HarnessError(f"SNP update of {length} bytes is not a whole number of 4 KiB pages")
    return length // PAGE_4K


def _page_units(pages, page_size: int, gpa: int = 0) -> list:
    """Split a run into 4 KiB units (None for zero units)."""
    out: list = []
    if page_size == PAGE_4K:
        for page in pages:
            if page is not None and len(page) != PAGE_4K:
                page = bytes(_short(page, page_size, gpa)) + bytes(PAGE_4K - len(page))
            out.append(page)
        return out
    for page in pages:
        if page is None:
            out.extend([None] * (page_size // PAGE_4K))
            continue
        view = memoryview(page)
        if len(view) != page_size:
            view = memoryview(bytes(_short(view, page_size, gpa)) + bytes(page_size - len(view)))
        out.extend(view[off:off + PAGE_4K] for off in range(0, page_size, PAGE_4K))
    return out


def _short(page, page_size: int, gpa: int):
    """``page`` if it is shorter than its page (QEMU zero-pads it), else the refusal."""
    if len(page) > page_size:
        raise HarnessError(f"SNP update at GPA {gpa:#x}: page data of {len(page)} bytes "
                           f"exceeds the page size {page_size}")
    return page


def _chain(ld: bytes, gpa: int, units) -> bytes:
    """The chain over ``units`` on this thread: CONTENTS hashed inline."""
    sha = hashlib.sha384
    head = _NORMAL_HEAD
    pack = _INFO_TAIL.pack
    zero = _ZERO_PAGE_HASH
    for u in units:
        ld = sha(ld + (zero if u is None else sha(u).digest()) + pack(head, gpa)).digest()
        gpa += PAGE_4K
    return ld


def _fold(ld: bytes, gpa: int, contents) -> bytes:
    """The chain over already computed CONTENTS."""
    sha = hashlib.sha384
    head = _NORMAL_HEAD
    pack = _INFO_TAIL.pack
    for c in contents:
        ld = sha(ld + c + pack(head, gpa)).digest()
        gpa += PAGE_4K
    return ld


def _batch_hashes(units) -> list[bytes]:
    sha = hashlib.sha384
    zero = _ZERO_PAGE_HASH
    return [zero if u is None else sha(u).digest() for u in units]


class _Batches:
    """CONTENTS of ``count`` batches (``hash_batch(i)``), claimed in order by
    every thread, the folding one included.

    The folding thread folds batch ``i`` as soon as it is ready; while it is
    not, it hashes the next unclaimed batch instead of waiting.  Claiming in
    page order keeps the batches hashed but not yet folded to one or two, so
    when the last batch is hashed only its fold is left: stealing from the
    back instead leaves the folds of all stolen batches to the end, on one
    thread (about 10 % of the two-thread time).
    """

    def __init__(self, count: int, hash_batch: Callable[[int], object]) -> None:
        import threading  # only long runs use threads (CLI start-up: tests/cli/test_startup.py)

        self.hash_batch = hash_batch
        self.count = count
        self.results: list[object] = [None] * self.count
        self.done = [threading.Event() for _ in range(self.count)]
        self.next = 0  # next unclaimed batch
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.stop = False

    def _claim(self) -> int | None:
        with self.lock:
            if self.stop or self.next >= self.count:
                return None
            self.next += 1
            return self.next - 1

    def _hash(self, i: int) -> None:
        self.results[i] = self.hash_batch(i)
        self.done[i].set()

    def helper(self) -> None:
        try:
            while (i := self._claim()) is not None:
                self._hash(i)
        except BaseException as exc:  # re-raised on the folding thread
            self.error = exc
            self.stop = True
            for ev in self.done:
                ev.set()

    def get(self, i: int):
        """Batch ``i``'s CONTENTS, hashing later batches on this thread while it is not ready."""
        while not self.done[i].is_set():
            j = self._claim()
            if j is None:
                self.done[i].wait()
            else:
                self._hash(j)
        if self.error is not None:
            raise self.error
        res = self.results[i]
        self.results[i] = None  # folded: drop the digests
        assert res is not None
        return res


def _run_parallel(batches: _Batches, fold: Callable[[bytes, int, object], bytes], ld: bytes, gpa: int,
                  stride: int, workers: int) -> bytes:
    """Helpers hash batches, this thread folds them in order (``stride`` bytes of GPA a batch)."""
    import threading

    threads = [threading.Thread(target=batches.helper, name=f"snp-contents-{n}", daemon=True)
               for n in range(workers - 1)]
    for t in threads:
        t.start()
    try:
        for i in range(batches.count):
            ld = fold(ld, gpa + i * stride, batches.get(i))
    finally:
        batches.stop = True  # an exception here (Ctrl-C): helpers claim no more
        for t in threads:
            t.join()
    return ld


def _chain_parallel(ld: bytes, gpa: int, units: list, workers: int) -> bytes:
    """The pure-Python chain with CONTENTS hashed by hashlib on ``workers`` threads."""
    batches = _Batches(-(-len(units) // _BATCH),
                       lambda i: _batch_hashes(units[i * _BATCH:(i + 1) * _BATCH]))
    return _run_parallel(batches, _fold, ld, gpa, _BATCH * PAGE_4K, workers)


def _native_parallel(fold, ld: bytes, gpa: int, pages, page_size: int, workers: int) -> bytes:
    """The C fold with CONTENTS hashed on ``workers`` threads, _NATIVE_BATCH units a batch
    (each thread's C call releases the GIL for the whole batch); the output
    buffers are allocated here, 48 bytes per unit of a batch."""
    per_item = page_size // PAGE_4K
    items = max(1, _NATIVE_BATCH // per_item)
    n = len(pages)

    def hash_batch(i: int) -> bytearray:
        lo, hi = i * items, min(n, (i + 1) * items)
        out = bytearray(LD_SIZE * per_item * (hi - lo))
        fold.contents(pages, page_size, lo, hi, out)
        return out

    batches = _Batches(-(-n // items), hash_batch)
    return _run_parallel(batches, fold.fold, ld, gpa, items * page_size, workers)
