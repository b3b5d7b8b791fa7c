"""One streaming walk over an IGVM file's headers, which every consumer subscribes to.

The validator's scan (:func:`harness.igvm.parser.scan`) reads each variable
header once, in file order.  Everything else a command wants of the headers
-- QEMU lint, the constructs a platform uses, the launch plan and its digest,
``describe``'s summary, the VP contexts -- subscribes to that same walk as a
:class:`Consumer`, so a command reads the headers once (``certify``: one
pass for validation, lint and every platform's checks) and no consumer needs
a Python object per header:

* page data arrives as :class:`PageRun` s: consecutive page headers of one
  mask, flags and type at contiguous guest addresses (and, for pages with
  data, contiguous file data), one event per run, never per page.  A run of
  4 KiB pages with data carries one buffer over all of its pages' bytes, so
  a digest hashes it in one call.  Long regular runs are read in bulk
  (:func:`regular_count`): 65,536 page headers cost a few vectorised
  comparisons, not 65,536 decodes;
* every other header arrives decoded (the scan builds it to check it
  anyway), once, shared by all consumers, and is not kept.

How a consumer plugs in: subclass :class:`Consumer` and override what it
needs (each hook has a default that does nothing), then hand it to the
walk::

    class Types(walk.Consumer):                  # e.g. count header types
        def __init__(self): self.seen = {}
        def header(self, walk, h, at):           # every non-page header
            self.seen[h.header_type] = self.seen.get(h.header_type, 0) + at.count
        def pages(self, walk, run):              # page data, run by run
            self.seen[0x302] = self.seen.get(0x302, 0) + run.count

    f, violations = parser.scan(data, consumers=[Types()])   # one pass, validated
    walk.replay(f, [Types()])      # or over an IgvmFile already parsed or built

A consumer that needs the platforms (a mask to filter by) reads them in
:meth:`Consumer.platforms_done`, called once every header of the platform
section has been seen (in a well-ordered file: before any other header);
it may :meth:`Walk.subscribe` more consumers there (one per platform, say).
A platform header after that point sets :attr:`Walk.late_platforms` (the
file breaks the section order); a consumer that cares runs again with
:func:`replay` on the parsed model.  Events come in file order: a run of
pages is handed over before the header that ends it.
"""

from __future__ import annotations

import array

from harness.errors import HarnessError
from harness.igvm.defs import HeaderType, PageDataFlags, Section

PAGE_4K = 0x1000
PAGE_2M = 0x200000
_PAGE_DATA = int(HeaderType.PAGE_DATA)
_LARGE = int(PageDataFlags.IS_2MB_PAGE)
#: A page data header: the TLV (type 0x302, length 24) and IGVM_VHS_PAGE_DATA
#: (gpa u64, mask u32, file_offset u32, flags u32, data_type u16, reserved u16):
#: 32 bytes, four u64 words (igvm_defs).
PAGE_HEADER_SIZE = 32
_TLV_WORD = _PAGE_DATA | (24 << 32)
#: Pages a run must have before the walk tries to read the next ones in bulk
#: (a bulk read costs a few microseconds even when it finds nothing).
BULK_AFTER = 8
_BULK_FIRST = 16  # headers compared by the first bulk probe; doubled while they continue
_U64 = (1 << 64) - 1


class PageRun:
    """Consecutive page data headers the walk hands over as one event.

    ``index``: file-order index of the first page's header (counting every
    variable header); ``position``: its position among the directives;
    ``count`` pages of ``page_size`` bytes from ``gpa``, all with the same
    ``mask``, ``flags`` and ``data_type``.  ``data``: None for pages without
    file data (zero pages), else their file data in page order -- for a run
    of 4 KiB pages exactly ``count * 4096`` bytes (a ``memoryview`` into the
    mapped file, never a copy), or, with ``repeat``, the one page every page
    of the run carries; a run of one page may carry less than a page (QEMU
    pads it with zeros).  ``file_offset``: where ``data`` starts in the
    walked file (0 when there is none or it is not from the file).

    QEMU coalesces page headers into regions by the same attributes
    (backends/igvm.c: qigvm_process_mem_page); a region may span several
    runs (a run also ends where the file data stops being contiguous)."""

    __slots__ = ("index", "position", "count", "gpa", "mask", "flags", "data_type",
                 "page_size", "data", "file_offset", "repeat")

    def __init__(self, index: int, position: int, count: int, gpa: int, mask: int, flags: int,
                 data_type: int, page_size: int, data=None, file_offset: int = 0,
                 repeat: bool = False) -> None:
        self.index = index
        self.position = position
        self.count = count
        self.gpa = gpa
        self.mask = mask
        self.flags = flags
        self.data_type = data_type
        self.page_size = page_size
        self.data = data
        self.file_offset = file_offset
        #: every page's file data is ``data`` (one 4 KiB page shared by all:
        #: a file stores identical pages once, e.g. OVMF's 0xFF variable store)
        self.repeat = repeat

    @property
    def length(self) -> int:
        """Guest bytes the run covers."""
        return self.count * self.page_size

    @property
    def end(self) -> int:
        return self.gpa + self.count * self.page_size

    @property
    def zero(self) -> bool:
        """No file data: the pages are zeros."""
        return self.data is None

    def page_data(self, k: int):
        """The file data of the run's page ``k`` (None for zero pages)."""
        if self.data is None:
            return None
        if self.count == 1 or self.repeat:
            return self.data
        return self.data[k * PAGE_4K:(k + 1) * PAGE_4K]

    def __repr__(self) -> str:
        return (f"PageRun(index={self.index}, count={self.count}, gpa={self.gpa:#x}, "
                f"mask={self.mask:#x}, flags={self.flags:#x}, data_type={self.data_type}, "
                f"page_size={self.page_size:#x}, data={'none' if self.data is None else len(self.data)}"
                f"{', repeat' if self.repeat else ''})")


class HeaderAt:
    """Where a non-page header was met: file-order ``index``, ``position``
    within its ``section`` (where the scan placed it), byte ``offset`` in the
    file (None for a header that is not from a file), and ``count``: how many
    byte-identical copies of it start here (more than 1 only past the
    violation limit, where the scan counts copies of a bad header at memcmp
    speed instead of walking them: a consumer takes them as one)."""

    __slots__ = ("index", "position", "section", "offset", "count")

    def __init__(self, index: int, position: int, section: int, offset: int | None,
                 count: int = 1) -> None:
        self.index = index
        self.position = position
        self.section = section
        self.offset = offset
        self.count = count


class Consumer:
    """A subscriber of the walk; every hook defaults to doing nothing.

    Hooks, in the order a walk calls them: :meth:`platforms_done` once,
    then :meth:`header` and :meth:`pages` in file order, then :meth:`end`
    if the walk read the whole variable-header section (a scan stopped at
    its first violation does not call it).  A consumer keeps what it needs
    in its own compact form; it must not keep the header objects of a file
    of unknown size.  A hook that raises HarnessError (the file is refused
    for this consumer's purpose) leaves it in :attr:`walk_error` and ends
    its events, not the walk: raise it when the result is asked for."""

    #: the HarnessError one of this consumer's hooks raised, if any
    walk_error: HarnessError | None = None
    #: the header types :meth:`header` is called for (None: every one; an
    #: empty set: none -- a consumer of page data only costs nothing per header)
    header_types: frozenset | None = None

    def platforms_done(self, walk: Walk) -> None:
        """Every platform header has been seen (``walk.platforms``)."""

    def header(self, walk: Walk, h, at: HeaderAt) -> None:
        """A header that is not page data: typed, or a ``RawHeader``."""

    def pages(self, walk: Walk, run: PageRun) -> None:
        """A run of page data headers."""

    def end(self, walk: Walk) -> None:
        """The walk is over."""


class Walk:
    """What a walk tells its consumers besides the events: the fixed
    header's facts, the platforms seen so far, the file."""

    def __init__(self, consumers=(), buffer=None) -> None:
        self.consumers: list[Consumer] = []
        #: the file, as a byte memoryview (slices of it are views, not copies)
        self.buffer = _bytes_view(buffer) if buffer is not None else None
        self.revision = 1
        self.architecture = 0
        self.page_size = PAGE_4K
        #: SUPPORTED_PLATFORM headers, in file order
        self.platforms: list = []
        #: a platform header came after another section's header (section order broken)
        self.late_platforms = False
        #: every variable header was read (a scan may stop at a violation)
        self.complete = False
        self.header_count = 0
        self._done = False
        self._by_type: dict[int, tuple] = {}  # header type -> consumers that want it
        for c in consumers:
            self.subscribe(c)

    def subscribe(self, consumer: Consumer) -> None:
        """Add a consumer (also from a consumer's :meth:`Consumer.platforms_done`)."""
        self.consumers.append(consumer)
        self._by_type.clear()
        if self._done:
            self._call(consumer, "platforms_done")

    def _call(self, consumer: Consumer, hook: str, *args) -> None:
        try:
            getattr(consumer, hook)(self, *args)
        except HarnessError as exc:
            self.drop(consumer, exc)

    def drop(self, consumer: Consumer, exc: HarnessError) -> None:
        """A consumer refused the file: it keeps the error (``walk_error``, to
        raise when its result is asked for) and gets no more events; the walk,
        and every other consumer, goes on."""
        consumer.walk_error = exc
        if consumer in self.consumers:
            self.consumers.remove(consumer)
            self._by_type.clear()

    def mask_for(self, platform_type: int) -> int:
        """The compatibility mask of the first platform header of this type (0: none)."""
        for p in self.platforms:
            if p.platform_type == platform_type:
                return p.compatibility_mask
        return 0

    def platform_of(self, mask: int):
        """The platform type of the first platform header with exactly ``mask``."""
        for p in self.platforms:
            if p.compatibility_mask == mask:
                return p.platform_type
        return None

    # ------------------------------------------------ for the walk's drivers
    def add_platform(self, h) -> None:
        self.platforms.append(h)
        if self._done:
            self.late_platforms = True

    def finish_platforms(self) -> None:
        if self._done:
            return
        self._done = True
        for c in tuple(self.consumers):
            self._call(c, "platforms_done")

    def header(self, h, at: HeaderAt) -> None:
        t = h.header_type
        targets = self._by_type.get(t)
        if targets is None:
            targets = self._by_type[t] = tuple(
                c for c in self.consumers if c.header_types is None or t in c.header_types)
        for c in targets:
            try:
                c.header(self, h, at)
            except HarnessError as exc:
                self.drop(c, exc)

    def pages(self, run: PageRun) -> None:
        for c in tuple(self.consumers):
            try:
                c.pages(self, run)
            except HarnessError as exc:
                self.drop(c, exc)

    def end(self) -> None:
        self.finish_platforms()
        self.complete = True
        for c in tuple(self.consumers):
            self._call(c, "end")


def _bytes_view(buf) -> memoryview:
    view = buf if isinstance(buf, memoryview) else memoryview(buf)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _rep(value: int, k: int) -> array.array:
    return array.array("Q", (value,)) * k


def _ramp(start: int, step: int, k: int) -> array.array:
    if not step:
        return _rep(start, k)
    return array.array("Q", range(start, start + k * step, step))


def _segment_ok(view, a: int, k: int, gpa: int, gpa_step: int, w2: int, w2_step: int,
                w3: int) -> bool:
    """Whether page headers ``a .. a + k - 1`` of ``view`` (32-byte headers,
    as u64 words) are ``(TLV, gpa + i * gpa_step, w2 + i * w2_step, w3)``."""
    words = view[a * PAGE_HEADER_SIZE:(a + k) * PAGE_HEADER_SIZE].cast("Q")
    return (words[0::4] == _rep(_TLV_WORD, k) and words[3::4] == _rep(w3, k)
            and words[1::4] == _ramp(gpa + a * gpa_step, gpa_step, k)
            and words[2::4] == _ramp(w2 + a * w2_step, w2_step, k))


def regular_count(buf, start: int, most: int, gpa: int, gpa_step: int, mask: int,
                  file_offset: int, flags: int, data_type: int, data_step: int = PAGE_4K) -> int:
    """How many page data headers from byte ``start`` of ``buf`` on (at most
    ``most``) continue a regular run: the first at ``gpa`` and
    ``file_offset`` (0: no file data), each next one ``gpa_step`` and
    ``data_step`` (4 KiB, or 0: the same data page) further, all with
    ``mask``, ``flags``, ``data_type`` and reserved 0.

    Compared as u64 words of 32-byte headers, a growing segment at a time
    (memoryview against array comparisons, in C), then narrowed down by
    halves where a segment stops matching: about 3 word comparisons a
    header instead of a decode each.  The caller bounds ``most`` so that
    every address and offset stays in range; a header that matches is then
    valid by construction (its checks are those of the run's first page)."""
    if most <= 0:
        return 0
    view = memoryview(buf)[start:start + most * PAGE_HEADER_SIZE]
    if view.format != "B":
        view = view.cast("B")
    w2 = mask | (file_offset << 32)
    w2_step = (data_step << 32) if file_offset else 0
    w3 = flags | (data_type << 32)
    done, step = 0, _BULK_FIRST
    while done < most:
        k = min(step, most - done)
        if _segment_ok(view, done, k, gpa, gpa_step, w2, w2_step, w3):
            done += k
            step *= 2
            continue
        lo, hi = done, done + k  # [done, lo) match; a header in [lo, hi) does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _segment_ok(view, lo, mid - lo, gpa, gpa_step, w2, w2_step, w3):
                lo = mid
            else:
                hi = mid
        return lo
    return done


class Runs:
    """Coalesces page data headers into :class:`PageRun` s for a walk's
    consumers, and finds the long regular runs that can be read in bulk.

    A driver calls :meth:`page` for each page header it reads (in file
    order), :meth:`flush` before any other header's event and at the end."""

    __slots__ = ("walk", "buf", "end", "size", "count", "index", "position", "gpa", "mask",
                 "flags", "dtype", "page_size", "fo", "fo_step", "next_index", "next_gpa",
                 "next_fo", "bulk", "sinks")

    def __init__(self, walk: Walk, buf=None, end: int = 0, size: int = 0) -> None:
        self.walk = walk
        self.buf = buf      # the file (bulk reads); None: no bulk
        self.end = end      # end of the variable header section
        self.size = size    # file size (file data bound)
        self.count = 0
        self.sinks: list = []
        self.bulk = False

    def page(self, idx: int, position, gpa: int, mask: int, fo: int, flags: int, dtype: int,
             pos: int = -1, clean: bool = False) -> int:
        """Add the page at header ``idx`` (``position``: its position among the
        directives, or a callable giving it; ``pos``: its byte offset, for a
        bulk read of the headers after it; ``clean``: it broke no rule, so
        identical successors need no checks).  Returns how many headers after
        it were taken in bulk (the driver skips them)."""
        if (self.count and idx == self.next_index and gpa == self.next_gpa and mask == self.mask
                and flags == self.flags and dtype == self.dtype):
            if fo != self.next_fo:
                # the second page decides: its data follows the first's, or is the same page
                if not (fo and fo == self.fo and self.count == 1 and self.page_size == PAGE_4K):
                    return self._start(idx, position, gpa, mask, fo, flags, dtype)
                self.fo_step = 0
                self.next_fo = fo
            self.count += 1
            self.next_index += 1
            self.next_gpa += self.page_size
            self.next_fo += self.fo_step
            if self.count >= BULK_AFTER and clean and pos >= 0 and self.bulk:
                return self._bulk(pos + PAGE_HEADER_SIZE)
            return 0
        return self._start(idx, position, gpa, mask, fo, flags, dtype)

    def _start(self, idx: int, position, gpa: int, mask: int, fo: int, flags: int,
               dtype: int) -> int:
        if self.count:
            self.flush()
        size = PAGE_2M if flags & _LARGE else PAGE_4K
        self.count = 1
        self.index, self.gpa, self.mask, self.flags, self.dtype, self.fo = (
            idx, gpa, mask, flags, dtype, fo)
        self.position = position() if callable(position) else position
        self.page_size = size
        self.next_index = idx + 1
        self.next_gpa = gpa + size
        # 4 KiB pages with data chain their file data (or share one page); a
        # 2 MiB page's data (4 KiB of it, zero-padded) stands alone
        self.fo_step = PAGE_4K if fo else 0
        self.next_fo = 0 if not fo else (fo + PAGE_4K if size == PAGE_4K else -1)
        self.bulk = self.buf is not None and (size == PAGE_4K or not fo)
        return 0

    def _bulk(self, start: int) -> int:
        most = (self.end - start) // PAGE_HEADER_SIZE
        if self.fo_step:
            most = min(most, (self.size - self.next_fo) // PAGE_4K)
        most = min(most, (_U64 - self.next_gpa) // self.page_size + 1)
        k = regular_count(self.buf, start, most, self.next_gpa, self.page_size, self.mask,
                          self.next_fo, self.flags, self.dtype, self.fo_step)
        if k:
            self.count += k
            self.next_index += k
            self.next_gpa += k * self.page_size
            self.next_fo += k * self.fo_step
        return k

    def add_run(self, run: PageRun) -> None:
        """Hand over a ready run (a driver over header objects: one page each)."""
        if self.count:
            self.flush()
        self.walk.pages(run)

    def flush(self) -> None:
        """Hand the pending run to the consumers."""
        count = self.count
        if not count:
            return
        self.count = 0
        consumers = self.walk.consumers
        if not consumers:
            return
        fo = self.fo
        data = None
        repeat = count > 1 and not self.fo_step and fo != 0
        if fo:
            data = self.buf[fo:fo + (PAGE_4K * count if self.fo_step and self.page_size == PAGE_4K
                                     else PAGE_4K)]
        self.walk.pages(PageRun(self.index, self.position, count, self.gpa, self.mask,
                                self.flags, self.dtype, self.page_size, data, fo, repeat))


# ------------------------------------------------------------------ replay
def replay(f, consumers, walk: Walk | None = None) -> Walk:
    """Walk an :class:`~harness.igvm.model.IgvmFile` already parsed (lazy
    sequences over its file: page headers read raw, long runs in bulk) or
    built (lists of header objects) for ``consumers``: the same events as a
    scan of its bytes gives, section by section (platforms, initializations,
    directives; the same order unless the file breaks the section order).
    Indices are the file's order for a parsed file, the sections' order
    (:meth:`IgvmFile.headers`) for a built one.  No checks are made here: a
    parsed file was checked by its scan."""
    from harness.igvm import model as m

    w = walk if walk is not None else Walk(buffer=getattr(f, "buffer", None))
    for c in consumers:
        if c not in w.consumers:
            w.subscribe(c)
    w.revision, w.architecture, w.page_size = f.revision, f.architecture, f.page_size
    index = 0
    file_index = getattr(f.platforms, "file_index", None)
    for pos, h in enumerate(f.platforms):
        if isinstance(h, m.SupportedPlatform):
            w.add_platform(h)
        w.header(h, HeaderAt(file_index(pos) if file_index else pos, pos, Section.PLATFORM,
                             _offset(f.platforms, pos)))
    index += len(f.platforms)
    w.finish_platforms()
    for section, seq in ((Section.INITIALIZATION, f.initializations),
                         (Section.DIRECTIVE, f.directives)):
        reader = getattr(seq, "walk_pages", None)
        if reader is not None:
            reader(w, section)
        else:
            _replay_objects(w, seq, index, section)
        index += len(seq)
    w.header_count = index
    w.end()
    return w


def _offset(seq, pos: int):
    offset = getattr(seq, "offset", None)
    return offset(pos) if offset is not None else None


def _replay_objects(w: Walk, seq, base: int, section: int) -> None:
    """Events for a plain list of header objects (a file the builder made)."""
    from harness.igvm import model as m

    runs = Runs(w)
    for pos, h, count in m.runs(seq):
        if type(h) is m.PageData or isinstance(h, m.PageData):
            size = PAGE_2M if h.flags & _LARGE else PAGE_4K
            data = h.data if h.data is not None and len(h.data) else None
            runs.add_run(PageRun(base + pos, pos, 1, h.gpa, h.compatibility_mask, h.flags,
                                 h.data_type, size, data))
            continue
        if isinstance(h, m.SupportedPlatform):
            w.add_platform(h)
        w.header(h, HeaderAt(base + pos, pos, section, None, count))
