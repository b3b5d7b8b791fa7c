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
"""

from __future__ import annotations

import hashlib
import os
import struct
from enum import IntEnum

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
        CONTENTS) and one of each 0x70-byte PAGE_INFO.  CONTENTS do not depend on
        the chain, so for long runs ``workers`` threads (this one included) hash
        them batch by batch -- hashlib releases the GIL while it hashes more than
        2047 bytes -- and this thread folds the chain in page order; ``workers=1``
        keeps everything on this thread.
        """
        units = _page_units(pages, page_size)
        if workers is None:
            workers = DEFAULT_WORKERS
        if workers > 1 and len(units) >= 2 * _BATCH:
            self._ld = _chain_parallel(self._ld, gpa, units, workers)
        else:
            self._ld = _chain(self._ld, gpa, units)
        self.pages += len(units)

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


def _pages(length: int) -> int:
    if length % PAGE_4K:
        raise HarnessError(f"SNP update of {length} bytes is not a whole number of 4 KiB pages")
    return length // PAGE_4K


def _page_units(pages, page_size: int) -> list:
    """Split a run into 4 KiB units (None for zero units)."""
    if page_size == PAGE_4K:
        out = []
        for page in pages:
            if page is not None and len(page) != PAGE_4K:
                page = bytes(page) + bytes(PAGE_4K - len(page))
            out.append(page)
        return out
    out = []
    for page in pages:
        if page is None:
            out.extend([None] * (page_size // PAGE_4K))
            continue
        view = memoryview(page)
        if len(view) != page_size:
            view = memoryview(bytes(view) + bytes(page_size - len(view)))
        out.extend(view[off:off + PAGE_4K] for off in range(0, page_size, PAGE_4K))
    return out


def _content_hash(unit) -> bytes:
    return _ZERO_PAGE_HASH if unit is None else hashlib.sha384(unit).digest()


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
    """CONTENTS of ``units`` in batches, claimed by helper threads from the front.

    The folding thread needs batch ``i`` next: if nobody claimed it, it hashes
    it itself; if a helper is on it, it hashes the *last* unclaimed batch
    meanwhile instead of waiting, so no thread idles while work is left.
    """

    def __init__(self, units: list) -> None:
        import threading  # only long runs use threads (CLI start-up: tests/cli/test_startup.py)

        self.units = units
        self.count = -(-len(units) // _BATCH)
        self.results: list[list[bytes] | None] = [None] * self.count
        self.done = [threading.Event() for _ in range(self.count)]
        self.front = 0               # next batch a helper claims
        self.back = self.count - 1   # next batch the folder steals
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.stop = False

    def _hash(self, i: int) -> None:
        self.results[i] = _batch_hashes(self.units[i * _BATCH:(i + 1) * _BATCH])
        self.done[i].set()

    def helper(self) -> None:
        try:
            while not self.stop:
                with self.lock:
                    if self.front > self.back:
                        return
                    i = self.front
                    self.front += 1
                self._hash(i)
        except BaseException as exc:  # re-raised on the folding thread
            self.error = exc
            self.stop = True
            for ev in self.done:
                ev.set()

    def get(self, i: int) -> list[bytes]:
        """Batch ``i``'s CONTENTS, hashing on this thread while it is not ready."""
        while not self.done[i].is_set():
            with self.lock:
                if self.front == i and self.front <= self.back:
                    j = i
                    self.front += 1
                elif self.front <= self.back:
                    j = self.back
                    self.back -= 1
                else:
                    j = None
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


def _chain_parallel(ld: bytes, gpa: int, units: list, workers: int) -> bytes:
    import threading

    batches = _Batches(units)
    threads = [threading.Thread(target=batches.helper, name=f"snp-contents-{n}", daemon=True)
               for n in range(workers - 1)]
    for t in threads:
        t.start()
    try:
        for i in range(batches.count):
            ld = _fold(ld, gpa + i * _BATCH * PAGE_4K, batches.get(i))
    finally:
        batches.stop = True  # an exception here (Ctrl-C): helpers claim no more
        for t in threads:
            t.join()
    return ld
