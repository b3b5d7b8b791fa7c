"""The relocation-region overlap check (O(n log n) sweep) against a
brute-force oracle written from the rule itself: a region is reported when
it shares a byte and a compatibility-mask bit with a region of an earlier
header (microsoft/igvm igvm/src/lib.rs validate_initialization_headers,
RelocationRegionsOverlap).  Speed is a benchmark (benchmarks/), not here."""

import random

import pytest
from hypothesis import given, settings, strategies as st

from harness.igvm.parser import _first_overlaps, parse
from harness.igvm.rules import IgvmFormatError
from harness.igvm.validate import validate
from tests.untrusted import hostile


def oracle(regions):
    """header index -> set of bits in which it overlaps an earlier header."""
    out = {}
    for j, (mj, sj, ej, ij) in enumerate(regions):
        for mi, si, ei, ii in regions[:j]:
            common = mi & mj
            if common and si < ej and sj < ei and sj < ej and si < ei:
                out.setdefault(ij, set()).update(b for b in range(32) if common >> b & 1)
    return out


def check(regions):
    got = _first_overlaps(regions)
    want = oracle(regions)
    assert set(got) == set(want)
    by_idx = {r[3]: r for r in regions}
    for idx, (bit, s, e) in got.items():
        assert bit == 1 << min(want[idx])  # the lowest overlapping bit is named
        m, start, end, _ = by_idx[idx]
        # the named region is a real earlier region overlapping this one in that bit
        assert any(r[3] < idx and r[1] == s and r[2] == e and r[0] & bit for r in regions)
        assert s < end and start < e


region = st.tuples(st.integers(1, 7), st.integers(0, 40), st.integers(0, 12))


@settings(max_examples=400, deadline=None)
@given(st.lists(region, max_size=14))
def test_matches_brute_force(raw):
    check([(mask, s, s + size, i) for i, (mask, s, size) in enumerate(raw)])


@pytest.mark.parametrize("seed", range(20))
def test_matches_brute_force_random_orders(seed):
    rng = random.Random(seed)
    n = rng.randrange(2, 120)
    regions = [(rng.choice((1, 2, 3, 5, 0x80000000)), rng.randrange(0, 2000) * 0x1000,
                0, i) for i in range(n)]
    regions = [(m, s, s + rng.randrange(0, 40) * 0x1000, i) for m, s, _, i in regions]
    check(regions)


def test_first_overlap_refuses_the_file():
    data = hostile.relocation_regions(300, overlap_last=True)
    assert [v.rule for v in validate(data)] == ["relocation-regions-overlap"]
    with pytest.raises(IgvmFormatError, match="relocation-regions-overlap"):
        parse(data)


def test_many_disjoint_regions_are_valid():
    # 64,000 regions of the issue: valid when disjoint, one violation when the
    # last overlaps the first (the time is measured in benchmarks/)
    assert validate(hostile.relocation_regions(64_000)) == []
    v = validate(hostile.relocation_regions(64_000, overlap_last=True))
    assert [x.rule for x in v] == ["relocation-regions-overlap"]
    assert v[0].header_index == 1 + 64_000 - 1  # after the one platform header


def test_4000_regions_with_16_mask_bits():
    """Issue 13: 4,000 regions over 16 mask bits (224 KB) took 42 s; the
    overlap is still found (the file also repeats its VSM platform)."""
    v = validate(hostile.relocation_regions(4000, overlap_last=True, mask_bits=16))
    assert {x.rule for x in v} == {"platform-duplicate", "relocation-regions-overlap"}
    overlaps = [x for x in v if x.rule == "relocation-regions-overlap"]
    assert len(overlaps) == 1 and "for mask 0x1" in overlaps[0].message  # lowest bit named
