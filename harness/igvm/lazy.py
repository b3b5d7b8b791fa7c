"""A parsed file's headers as a compact read-only sequence over the mapped file.

A Python object per header costs ~125 bytes of model (~170 resident) for a
32-byte header: a file made only of data-less headers (zero pages, required
memory, parameters) would need several times its own size in memory.  A
parsed :class:`~harness.igvm.model.IgvmFile` therefore keeps each section as
a :class:`LazyHeaders`: the file-order header offsets (4 bytes a header: a
file is at most 4 GiB, the fixed header's u32 ``total_file_size``), which
headers of them belong to the section (a ``range`` while they are
contiguous, as in every well-ordered file), and the decoder that builds a
header object from its bytes when it is read.  Objects are built on every
access and not kept: loop over the sequence, do not ``list()`` it.
"""

from __future__ import annotations

import array
import struct

_TYPE = struct.Struct("<I")  # a variable header starts with its u32 type

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: ``typing`` is not imported at start-up
    from typing import Callable, Iterator, Sequence

#: ``array`` type code of the offsets: 4-byte unsigned (files are < 4 GiB).
OFFSET_CODE = "I"


class IndexBuilder:
    """Which file-order header indices a section holds, while the scan
    appends them: a ``range`` for a contiguous run (no memory per header),
    an ``array`` of 4-byte indices once the section is interleaved."""

    __slots__ = ("start", "stop", "arr", "copies")

    def __init__(self) -> None:
        self.start = self.stop = 0
        self.arr: array.array | None = None
        #: section position -> how many byte-identical copies follow it
        self.copies: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.arr) if self.arr is not None else self.stop - self.start

    def add(self, i: int) -> None:
        if self.arr is not None:
            self.arr.append(i)
        elif i == self.stop:
            self.stop += 1
        elif self.start == self.stop:
            self.start, self.stop = i, i + 1
        else:
            self.arr = array.array(OFFSET_CODE, range(self.start, self.stop))
            self.arr.append(i)

    def add_range(self, i: int, count: int) -> None:
        """Add ``i, i + 1, ..., i + count - 1`` (headers the walk read in bulk)."""
        if self.arr is None and i == self.stop and self.start != self.stop:
            self.stop += count
        elif self.arr is None and self.start == self.stop:
            self.start, self.stop = i, i + count
        else:
            if self.arr is None:
                self.arr = array.array(OFFSET_CODE, range(self.start, self.stop))
            self.arr.extend(range(i, i + count))

    def add_copies(self, i: int, count: int) -> None:
        """Add ``i, i + 1, ..., i + count - 1``: byte-identical copies of
        the header added last (consumers may take them as one, :meth:`LazyHeaders.runs`)."""
        self.copies[len(self) - 1] = count
        if self.arr is None and i == self.stop:
            self.stop += count
        else:
            for j in range(i, i + count):
                self.add(j)

    def indices(self) -> range | array.array:
        return self.arr if self.arr is not None else range(self.start, self.stop)


class LazyHeaders:
    """Read-only sequence of the headers at ``offsets[i] for i in index``
    (``len``, indexing, slicing, iteration, equality with a list)."""

    __slots__ = ("_decode", "_offsets", "_index", "_copies", "_buf", "_where", "_replay")

    def __init__(self, decode: Callable[[int], object], offsets: Sequence[int],
                 index: Sequence[int], copies: dict[int, int] | None = None,
                 buf=None, replay=None) -> None:
        self._decode = decode
        self._offsets = offsets
        self._index = index
        self._copies = copies or {}
        self._buf = buf  # the file: header types are read from it without decoding
        self._where: dict[int, array.array] = {}  # header type -> positions (of_type)
        self._replay = replay  # (self, walk, section): the walk's events for this section

    def walk_pages(self, walk, section: int) -> None:
        """Give ``walk`` (:mod:`harness.igvm.walk`) this section's events:
        page data as runs read from the file, no object per page."""
        if self._replay is None:
            from harness.igvm.walk import HeaderAt, PageRun, Runs
            _replay_decoded(self, walk, section, HeaderAt, PageRun, Runs)
            return
        self._replay(self, walk, section)

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._decode(self._offsets[j]) for j in self._index[i]]
        return self._decode(self._offsets[self._index[i]])

    def __iter__(self) -> Iterator:
        decode, offsets = self._decode, self._offsets
        for j in self._index:
            yield decode(offsets[j])

    def runs(self) -> Iterator[tuple[int, object, int]]:
        """``(position, header, count)`` in order, where ``count`` headers
        from ``position`` on are byte-identical copies of ``header``.

        The scan records such runs only past the violation limit (4 million
        copies of one bad header, the attack of issue 13); elsewhere every
        count is 1.  Consumers that only count or summarise headers read a
        run as one, so that the attack costs them what it cost the scan."""
        copies = self._copies
        if not copies:
            for i, h in enumerate(self):
                yield i, h, 1
            return
        decode, offsets, index = self._decode, self._offsets, self._index
        i, n = 0, len(index)
        while i < n:
            count = 1 + copies.get(i, 0)
            yield i, decode(offsets[index[i]]), count
            i += count

    def type_runs(self) -> Iterator[tuple[int, int, int]]:
        """``(position, header type, count)`` as :meth:`runs`, without
        building any header (the type is the TLV's first u32)."""
        unpack, buf, offsets, index, copies = (_TYPE.unpack_from, self._buf, self._offsets,
                                               self._index, self._copies)
        i, n = 0, len(index)
        while i < n:
            count = 1 + copies.get(i, 0) if copies else 1
            yield i, unpack(buf, offsets[index[i]])[0], count
            i += count

    def of_type(self, header_type: int) -> Iterator[tuple[int, object]]:
        """``(position, header)`` of the headers of one TLV type, the others
        skipped without being built (a VP context among a million pages, a
        platform among millions of bad headers); the positions found are
        kept (4 bytes each), so asking again costs only those headers."""
        where = self._where.get(header_type)
        if where is None:  # one pass of type reads, kept: the sequence never changes
            where = array.array(OFFSET_CODE)
            for pos, t, count in self.type_runs():  # a run of copies: one read
                if t == header_type:
                    where.extend(range(pos, pos + count))
            self._where[header_type] = where
        decode, offsets, index = self._decode, self._offsets, self._index
        for pos in where:
            yield pos, decode(offsets[index[pos]])

    def __bool__(self) -> bool:
        return len(self._index) > 0

    def file_index(self, i: int) -> int:
        """The header's index among all variable headers, in file order."""
        return self._index[i]

    def offset(self, i: int) -> int:
        """The header's byte offset in the file."""
        return self._offsets[self._index[i]]

    def __eq__(self, other) -> bool:
        if not isinstance(other, (list, tuple, LazyHeaders)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<LazyHeaders: {len(self)} headers>"


def _replay_decoded(seq: LazyHeaders, walk, section: int, HeaderAt, PageRun, Runs) -> None:
    """:meth:`LazyHeaders.walk_pages` without the file's decoder: header by header."""
    runs = Runs(walk)
    for pos, h, count in seq.runs():
        data = getattr(h, "data", None) if h.header_type == 0x302 and hasattr(h, "gpa") else None
        if h.header_type == 0x302 and hasattr(h, "gpa"):
            runs.add_run(PageRun(seq.file_index(pos), pos, 1, h.gpa, h.compatibility_mask,
                                 h.flags, h.data_type, 0x200000 if h.flags & 1 else 0x1000,
                                 data if data is not None and len(data) else None))
            continue
        walk.header(h, HeaderAt(seq.file_index(pos), pos, section, seq.offset(pos), count))
