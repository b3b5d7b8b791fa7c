"""The parsed model's lazy header sequences (harness/igvm/lazy.py): what
they hold, that they decode every header the walk saw, and that they cost
a few bytes per header rather than an object."""

from __future__ import annotations

import struct
import tracemalloc

import pytest

from fuzz import seeds
from harness.igvm import model as m
from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import PlatformType
from harness.igvm.lazy import IndexBuilder, LazyHeaders
from harness.igvm.parser import parse, scan
from tests.untrusted import hostile

SEEDS = seeds.seeds()


def _tlvs(data: bytes) -> list[tuple[int, int]]:
    """(offset, type) of each variable header, walked here from the fixed
    header's variable_header_offset/size (igvm_defs IGVM_FIXED_HEADER)."""
    vho, vhs = struct.unpack_from("<II", data, 8)
    pos, end, out = vho, vho + vhs, []
    while pos + 8 <= end:
        t, length = struct.unpack_from("<II", data, pos)
        nxt = pos + 8 + ((length + 7) & ~7)
        if nxt > end:
            break
        out.append((pos, t))
        pos = nxt
    return out


def test_index_builder_is_a_range_until_interleaved():
    b = IndexBuilder()
    for i in (3, 4, 5):
        b.add(i)
    assert b.indices() == range(3, 6)
    b.add(9)
    assert list(b.indices()) == [3, 4, 5, 9]
    b.add_copies(10, 3)
    assert list(b.indices()) == [3, 4, 5, 9, 10, 11, 12] and b.copies == {3: 3}


def test_parsed_model_equals_the_built_one():
    b = IgvmBuilder()
    b.platform(PlatformType.SEV_SNP)
    b.pages(0x100000, b"\x01" * 0x3000)
    b.zero_pages(0x200000, 4)
    idx = b.parameter_area(0x1000)
    b.vp_count(idx)
    b.parameter_insert(0x300000, idx)
    f = parse(b.build())
    assert isinstance(f.directives, LazyHeaders)
    assert f == b.model()  # element by element, lazy against lists
    assert f.directives[1:3] == list(b.model().directives)[1:3]
    assert f.directives[-1] == b.model().directives[-1]
    assert [f.directives.offset(i) for i in range(2)] == [f.offsets[1], f.offsets[2]]


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_every_walked_header_is_in_the_model(name):
    """For every mutator output the fuzz corpus starts from: the model has
    one header per TLV the walk got to, each of the TLV's type, in file order."""
    data = SEEDS[name]
    f, v = scan(data, limit=None)
    if f is None:
        return
    got = sorted((seq.offset(i), h.header_type)
                 for seq in (f.platforms, f.initializations, f.directives)
                 for i, h in enumerate(seq))
    walked = _tlvs(data)
    if any(x.rule == "header-truncated" for x in v):
        walked = walked[:len(got)]
    assert got == walked


def test_a_header_only_file_costs_bytes_not_objects():
    """100,000 zero pages (3.2 MB of headers): the scan and the model keep
    4 bytes of offset per header (was ~125 B of objects)."""
    data = hostile.zero_pages(100_000)
    tracemalloc.start()
    try:
        f, v = scan(data)
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not v and len(f.directives) == 100_000
    assert held < 100_000 * 8 + 256 * 1024, held
    assert peak < 100_000 * 8 + 512 * 1024, peak
    pages = sum(1 for d in f.directives if isinstance(d, m.PageData) and d.data is None)
    assert pages == 100_000


def test_the_scanner_is_freed_without_a_collection(monkeypatch):
    """The scanner's arrays (offsets aside, which the model keeps) must go
    when the scan returns, not at the next cyclic collection: certify scans
    twice, and a scanner left for the GC made the two scans' peaks add up."""
    import gc
    import weakref
    from harness.igvm import parser
    refs = []
    init = parser._Scanner.__init__

    def spy(self, *args, **kw):
        init(self, *args, **kw)
        refs.append(weakref.ref(self))
    monkeypatch.setattr(parser._Scanner, "__init__", spy)
    was = gc.isenabled()
    gc.disable()
    try:
        f, _ = parser.scan(hostile.relocation_regions(10))
        assert refs and refs[0]() is None
        assert len(f.initializations) == 10  # the model outlives it
    finally:
        if was:
            gc.enable()
