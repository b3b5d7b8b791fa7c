"""Past the violation limit the scan reads on and counts: the first
MAX_VIOLATIONS are kept, the rest counted exactly.  Each expected count is
what the test built into the file (tests/untrusted/hostile.py), not what
the validator printed."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.igvm.limits import MAX_VIOLATIONS
from harness.igvm.validate import validate
from tests.untrusted import hostile


@pytest.mark.parametrize("count, per_header, reserved", [
    (MAX_VIOLATIONS - 1, 1, False), (MAX_VIOLATIONS, 1, False), (MAX_VIOLATIONS + 1, 1, False),
    (1000, 1, False), (1000, 2, True)])
def test_every_violation_is_counted(count, per_header, reserved):
    v = validate(hostile.unaligned_pages(count, reserved=reserved))
    total = count * per_header
    assert v.total == total
    assert len(v) == min(total, MAX_VIOLATIONS)  # the storage bound holds
    assert v.not_shown == max(0, total - MAX_VIOLATIONS)
    assert v.truncated == (total > MAX_VIOLATIONS)
    rules = {"gpa-unaligned", "reserved-nonzero"} if reserved else {"gpa-unaligned"}
    assert {x.rule for x in v} == rules


def test_first_not_shown_is_where_the_limit_was_passed():
    v = validate(hostile.unaligned_pages(MAX_VIOLATIONS + 5))
    # header 0 is the platform; page i is header i + 1, one violation each
    assert v.first_not_shown[0] == MAX_VIOLATIONS + 1
    assert f"{5} more violations not shown" in v.summary()


def test_a_whole_file_violation_after_the_limit_is_counted():
    base = hostile.unaligned_pages(300)
    v = validate(hostile.with_reused_area_index(base))
    assert v.total == 300 + 1 and v.not_shown == 300 + 1 - MAX_VIOLATIONS


@pytest.mark.parametrize("count", [MAX_VIOLATIONS + 1, 5000, 100_003])
def test_identical_copies_are_counted_too(count):
    """hostile.bad_headers: ``count`` byte-identical unknown headers, one
    violation each (past the limit they are counted without a walk)."""
    v = validate(hostile.bad_headers(count))
    assert v.total == count and len(v) == MAX_VIOLATIONS


def test_identical_copies_then_other_violations():
    v = validate(hostile.with_reused_area_index(hostile.bad_headers(10_000)))
    assert v.total == 10_000 + 1


def test_the_lazy_model_reads_every_header_of_a_counted_file():
    """The model of a file scanned past the limit has every header, the
    counted copies included (4 bytes each, built on access)."""
    from harness.igvm.parser import scan
    f, v = scan(hostile.bad_headers(5000))
    assert f.header_count() == 5001 and v.total == 5000
    assert f.platforms[-1].header_type == 0x7F and f.platforms[-1] == f.platforms[200]


def test_cli_json_carries_the_count(tmp_path, capsys):
    path = tmp_path / "bad.igvm"
    path.write_bytes(hostile.unaligned_pages(777))
    assert main(["validate", "--json", str(path)]) == 1
    doc = json.loads(capsys.readouterr().out)
    summary = doc["violation_summary"]
    assert len(doc["violations"]) == MAX_VIOLATIONS
    assert summary["total"] == 777 and summary["not_shown"] == 777 - MAX_VIOLATIONS


def test_cli_text_says_how_many_more(tmp_path, capsys):
    path = tmp_path / "bad.igvm"
    path.write_bytes(hostile.unaligned_pages(250, reserved=True))
    assert main(["validate", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == MAX_VIOLATIONS + 1
    assert lines[-1].endswith(f"{500 - MAX_VIOLATIONS} more violations not shown "
                              f"(the first of them at header {MAX_VIOLATIONS // 2 + 1}, "
                              f"offset 0x{0x18 + 0x18 + (MAX_VIOLATIONS // 2) * 32:x})")


def test_every_overlapping_region_is_counted():
    """hostile.relocation_regions(n, stride=0): n regions at one GPA, each
    overlapping every earlier one: n - 1 relocation-regions-overlap
    violations, the first listed naming the first region's range."""
    n = 3000
    v = validate(hostile.relocation_regions(n, stride=0))
    assert v.total == n - 1 and len(v) == MAX_VIOLATIONS
    assert {x.rule for x in v} == {"relocation-regions-overlap"}
    assert v[0].header_index == 2  # platform 0, first region 1, the second overlaps it
    assert "overlaps [0x40000000, 0x40200000) for mask 0x1" in v[0].message


def test_alternating_bad_headers_are_walked_and_counted():
    """No two neighbours alike: no copy is skipped, every header is walked."""
    v = validate(hostile.alternating_bad_headers(20_001))
    assert v.total == 20_001 and len(v) == MAX_VIOLATIONS


@pytest.mark.parametrize("make", [hostile.bad_headers, hostile.alternating_bad_headers])
def test_inspect_lists_raw_headers_up_to_the_limit(make):
    """describe lists at most MAX_VIOLATIONS headers kept raw (each one a
    violation) and counts the rest: 5,000 were built."""
    from harness.igvm.describe import describe
    from harness.igvm.parser import parse
    d = describe(parse(make(5000), check=False))
    raw = [h for h in d["headers"] if h["type"] != "SUPPORTED_PLATFORM"]
    assert len(raw) == MAX_VIOLATIONS
    assert d["raw_headers_not_listed"] == 5000 - MAX_VIOLATIONS
