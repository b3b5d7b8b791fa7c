"""The one streaming walk (harness/igvm/walk.py): what its consumers see.

The same events must come from every driver: the scan of a file's bytes
(page headers coalesced into runs, regular runs read in bulk), the replay of
the parsed model (the same, from the model's offsets) and the replay of a
model made of header objects (a list per section: every page its own run,
the per-header path).  Expanded page by page, the runs must equal the
headers the model decodes one at a time; the bulk read must find exactly
what the header-by-header loop finds, violations included.
"""

from __future__ import annotations

import functools
import os
import struct

import pytest

from fuzz import seeds
from harness.igvm import model as m
from harness.igvm import walk
from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import KVM_VMSA_GPA, PlatformType
from harness.igvm.parser import parse, scan
from tests.untrusted import hostile

SEEDS = seeds.seeds()


class Recorder(walk.Consumer):
    """Every event, page runs expanded to one entry per page."""

    def __init__(self) -> None:
        self.events: list = []
        self.runs: list[walk.PageRun] = []
        self.platforms = None
        self.ended = False

    def platforms_done(self, w):
        self.platforms = [(p.platform_type, p.compatibility_mask) for p in w.platforms]

    def header(self, w, h, at):
        self.events.append(("header", at.index, at.position, int(at.section), at.count, h))

    def pages(self, w, run):
        self.runs.append(run)
        for k in range(run.count):
            data = run.page_data(k)
            self.events.append(("page", run.index + k, run.position + k, run.gpa + k * run.page_size,
                                run.mask, run.flags, run.data_type, run.page_size,
                                _padded(data)))

    def end(self, w):
        self.ended = True


def _padded(data):
    """A page's data as a loader sees it (the builder's model keeps short
    data short; the file pads it to 4 KiB)."""
    return None if data is None else bytes(data).ljust(4096, b"\0")


def _scanned(data: bytes, **kw) -> tuple[Recorder, m.IgvmFile, list]:
    r = Recorder()
    f, v = scan(data, consumers=[r], **kw)
    return r, f, v


def _replayed(f) -> Recorder:
    r = Recorder()
    walk.replay(f, [r])
    return r


def _as_pages(f: m.IgvmFile) -> list:
    """The events the walk must give, from the model's headers one by one
    (indices: the file's order for a parsed model, else the sections')."""
    out = []
    base = 0
    for section, seq in enumerate((f.platforms, f.initializations, f.directives)):
        index = getattr(seq, "file_index", lambda pos: base + pos)
        for pos, h in enumerate(seq):
            if isinstance(h, m.PageData):
                out.append(("page", index(pos), pos, h.gpa, h.compatibility_mask, h.flags,
                            h.data_type, h.size, _padded(h.data) if h.data else None))
            else:
                out.append(("header", index(pos), pos, section, 1, h))
        base += len(seq)
    return out


def _no_index(events: list) -> list:
    return [e[:1] + e[2:] for e in events]


def _contiguous(n: int = 3000, **kw) -> IgvmBuilder:
    b = IgvmBuilder()
    b.platform(PlatformType.SEV_SNP)
    b.platform(PlatformType.SEV)
    payload = bytearray(os.urandom(n * 4096))
    b.pages(0x100000, bytes(payload), **kw)
    return b


def _mixed() -> IgvmBuilder:
    b = IgvmBuilder()
    snp = b.platform(PlatformType.SEV_SNP)
    sev = b.platform(PlatformType.SEV)
    b.guest_policy(0x30000, mask=snp)
    b.pages(0x100000, os.urandom(40 * 4096))
    b.pages(0x200000, b"\xFF" * (30 * 4096))         # one page of data, shared by 30
    b.zero_pages(0x300000, 20)
    b.zero_pages(0x400000, 3, large=True)
    b.page(0xA00000, b"\x01" * 100, large=True)       # a 2 MiB page with (short) data
    b.page(0xC00000, b"\x02" * 4096, large=True)
    b.pages(0x500000, os.urandom(12 * 4096), mask=sev)
    b.pages(0x500000, os.urandom(12 * 4096), mask=snp)
    b.pages(0x600000, os.urandom(4 * 4096), data_type=1, mask=snp)  # SECRETS
    idx = b.parameter_area(0x1000)
    b.vp_count(idx)
    b.parameter_insert(0x700000, idx)
    b.pages(0x800000, os.urandom(9 * 4096), shared=True)
    b.vp_context(KVM_VMSA_GPA, bytes(4096), mask=snp)
    return b


BUILT = {"contiguous": _contiguous, "mixed": _mixed}


@pytest.mark.parametrize("name", sorted(BUILT))
def test_every_driver_gives_the_events_of_the_headers(name):
    b = BUILT[name]()
    data = b.build()
    scanned, f, v = _scanned(data)
    assert not v and scanned.ended
    expected = _as_pages(f)
    assert scanned.events == expected
    assert _replayed(f).events == expected
    assert _replayed(b.model()).events == expected  # header objects: the per-header path
    assert scanned.platforms == [(p.platform_type, p.compatibility_mask) for p in f.platforms]


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_every_driver_agrees_on_the_fuzz_seeds(name):
    """Every mutator's output: the scan's events are the model's headers (as
    far as the scan read), and the replays of the parsed and the decoded
    model give the same."""
    scanned, f, v = _scanned(SEEDS[name], limit=None)
    if f is None:
        return
    expected = _as_pages(f)
    assert _replayed(f).events == expected
    # decoded objects have no file order: their indices are the sections' order
    objects = parse(SEEDS[name], check=False).materialize()
    assert _replayed(objects).events == _as_pages(objects)
    assert _no_index(_replayed(objects).events) == _no_index(expected)
    # the scan meets the headers in file order, a replay section by section
    # (the same order unless the file breaks the section order)
    in_file_order = sorted(expected, key=lambda e: e[1])
    if scanned.ended:
        assert scanned.events == in_file_order
    else:  # an unreadable header ended the scan: what it saw is a prefix
        assert scanned.events == in_file_order[:len(scanned.events)]


def test_a_regular_run_is_one_event_over_the_mapped_bytes():
    b = _contiguous(3000)
    data = b.build()
    scanned, f, v = _scanned(data)
    (run,) = scanned.runs
    assert (run.count, run.gpa, run.page_size, run.repeat) == (3000, 0x100000, 4096, False)
    assert isinstance(run.data, memoryview) and len(run.data) == 3000 * 4096
    # the IGVM_VHS_PAGE_DATA of the first page (igvm_defs) says where its data is
    first = f.offsets[2]
    assert struct.unpack_from("<I", data, first + 8 + 12)[0] == run.file_offset
    assert bytes(run.data) == data[run.file_offset:run.file_offset + 3000 * 4096]


def test_pages_sharing_one_data_page_are_one_repeated_run():
    b = IgvmBuilder()
    b.platform(PlatformType.SEV_SNP)
    b.pages(0x100000, b"\xFF" * (500 * 4096))  # the builder stores the page once
    scanned, f, v = _scanned(b.build())
    (run,) = scanned.runs
    assert run.repeat and run.count == 500 and bytes(run.data) == b"\xFF" * 4096


@pytest.fixture
def no_bulk(monkeypatch):
    """The walk without its bulk read: every page header through the loop."""
    def off():
        monkeypatch.setattr(walk, "BULK_AFTER", 1 << 62)
    return off


@functools.lru_cache(maxsize=1)
def _long_run() -> bytes:
    return _contiguous(2100).build()


def _break_at(data: bytes, header: int, field: str, value: int) -> bytes:
    """``data`` with one field of page data header ``header`` (file order)
    changed, the checksum left stale (a violation of its own, the same for
    both walks)."""
    f = parse(data)
    off = f.offsets[header] + 8
    layout = {"gpa": (0, "<Q"), "mask": (8, "<I"), "file_offset": (12, "<I"), "flags": (16, "<I"),
              "data_type": (20, "<H"), "reserved": (22, "<H")}
    at, fmt = layout[field]
    out = bytearray(data)
    struct.pack_into(fmt, out, off + at, value)
    return bytes(out)


BREAKS = [("gpa", 0x10000000), ("mask", 2), ("file_offset", 0), ("flags", 2), ("flags", 8),
          ("data_type", 1), ("data_type", 9), ("reserved", 1), ("gpa", 0x100001),
          ("file_offset", 0xFFFFFFF0)]


@pytest.mark.parametrize("field,value", BREAKS)
@pytest.mark.parametrize("where", [9, 30, 700, 2001])
@pytest.mark.parametrize("strict", [False, True])
def test_the_bulk_read_finds_what_the_header_loop_finds(no_bulk, field, value, where, strict):
    """One page header somewhere in a long regular run breaks the pattern
    (an address, mask, offset, flag or type, some of them violations): the
    scan with its bulk read gives the same violations, model and events as
    the scan that reads every header."""
    data = _break_at(_long_run(), 2 + where, field, value)
    fast, f1, v1 = _scanned(data, strict=strict, limit=None)
    no_bulk()
    slow, f2, v2 = _scanned(data, strict=strict, limit=None)
    assert [str(x) for x in v1] == [str(x) for x in v2]
    assert list(f1.offsets) == list(f2.offsets)
    assert list(f1.directives._index) == list(f2.directives._index)
    assert fast.events == slow.events
    assert len(fast.runs) <= len(slow.runs)


def test_a_consumer_subscribed_per_platform_sees_the_rest():
    class PerPlatform(walk.Consumer):
        def __init__(self):
            self.counters = {}

        def platforms_done(self, w):
            for p in w.platforms:
                c = Recorder()
                self.counters[p.platform_type] = c
                w.subscribe(c)

    b = _mixed()
    per = PerPlatform()
    scanned, f, v = _scanned(b.build())
    scan(b.build(), consumers=[per])
    assert set(per.counters) == {PlatformType.SEV_SNP, PlatformType.SEV}
    for c in per.counters.values():
        assert c.ended and c.events == [e for e in scanned.events if e[0] == "page" or e[3] != 0]


def test_late_platform_headers_are_flagged():
    """A platform header after a directive breaks the section order: the
    walk says so, so that a consumer that needs every platform replays."""
    # igvm_defs layouts: IGVM_VHS_SUPPORTED_PLATFORM (mask 2: SEV) after a zero page
    page = struct.pack("<IIQIIIHH", 0x302, 24, 0x100000, 1, 0, 0, 0, 0)
    late = struct.pack("<II", 0x1, 0x10) + struct.pack("<IBBHQ", 2, 0, int(PlatformType.SEV), 1, 0)
    data = hostile._file(hostile._platform(PlatformType.SEV_SNP) + page + late)
    seen = []

    class Late(walk.Consumer):
        def end(self, wk):
            seen.append((wk.late_platforms, [p.platform_type for p in wk.platforms]))
    f, v = scan(data, consumers=[Late()])
    assert [x.rule for x in v] == ["section-order"]
    assert seen == [(True, [PlatformType.SEV_SNP, PlatformType.SEV])]


def test_the_documented_consumer_works():
    """The example in harness/igvm/walk.py's docstring."""
    class Types(walk.Consumer):
        def __init__(self):
            self.seen = {}

        def header(self, w, h, at):
            self.seen[h.header_type] = self.seen.get(h.header_type, 0) + at.count

        def pages(self, w, run):
            self.seen[0x302] = self.seen.get(0x302, 0) + run.count

    b = _mixed()
    t1, t2 = Types(), Types()
    f, violations = scan(b.build(), consumers=[t1])
    walk.replay(f, [t2])
    expected: dict[int, int] = {}
    for h in f.headers():
        expected[h.header_type] = expected.get(h.header_type, 0) + 1
    assert t1.seen == t2.seen == expected


def test_a_hostile_run_of_zero_pages_is_one_event():
    """Issue 13's header-only file: 100,000 zero pages, one run, read in bulk."""
    r, f, v = _scanned(hostile.zero_pages(100_000))
    assert not v and [(x.count, x.data) for x in r.runs] == [(100_000, None)]


def test_a_consumer_that_refuses_leaves_the_walk_going():
    """A consumer's HarnessError stays with it (walk_error); the scan and the
    other consumers go on (certify's lint refusing a file is the lint
    check's error, not the end of the certification)."""
    from harness.errors import HarnessError

    class Refuses(walk.Consumer):
        def __init__(self):
            self.pages_seen = 0

        def pages(self, w, run):
            self.pages_seen += 1
            raise HarnessError("no")

    bad, good = Refuses(), Recorder()
    f, v = scan(_mixed().build(), consumers=[bad, good])
    assert not v and good.ended and str(bad.walk_error) == "no" and bad.pages_seen == 1
    assert good.events == _as_pages(f)
