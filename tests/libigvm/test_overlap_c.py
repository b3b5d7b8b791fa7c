"""The C library's O(n log n) relocation overlap check against a brute-force
oracle written from the rule (microsoft/igvm igvm/src/lib.rs
validate_initialization_headers: any two relocation / page table regions
sharing a byte and a compatibility-mask bit -> RelocationRegionsOverlap,
IGVMAPI -20).  Speed is in benchmarks/test_untrusted_bench.py."""

from __future__ import annotations

import random
import struct
import subprocess

import pytest

from harness.igvm import defs, model as m
from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import PlatformType

RELOCATION_REGIONS_OVERLAP = -20


def _file(regions) -> bytes:
    """A VSM (mask 1) and a native (mask 2) platform, relocation regions
    (mask, start, 2 MiB pages) and the VBS VP context mask 1 needs."""
    b = IgvmBuilder()
    b.platform(PlatformType.VSM_ISOLATION, highest_vtl=2)
    b.platform(PlatformType.NATIVE)
    for mask, start, pages in regions:
        gpa = start * 0x200000
        b.add(m.RelocatableRegion(compatibility_mask=mask, vp_index=0, vtl=0, flags=0,
                                  relocation_alignment=0x200000, relocation_region_gpa=gpa,
                                  relocation_region_size=pages * 0x200000,
                                  minimum_relocation_gpa=gpa, maximum_relocation_gpa=gpa))
    regs = struct.pack("<I", 1) + defs.VBS_VP_CONTEXT_REGISTER.pack(
        vtl=0, register_name=0x20010, mbz=bytes(11), register_value=bytes(16))
    b.add(m.VpContext(0, 1, 0, regs))
    return b.build()


def _oracle(regions) -> bool:
    return any(mi & mj and si < sj + nj and sj < si + ni
               for k, (mj, sj, nj) in enumerate(regions) for mi, si, ni in regions[:k])


def _code(tool, path) -> int:
    out = subprocess.run([str(tool), str(path)], capture_output=True, text=True, timeout=60)
    return int(out.stdout.split()[0])


@pytest.mark.parametrize("seed", range(40))
def test_c_overlap_matches_brute_force(igvm_check, tmp_path, seed):
    rng = random.Random(seed)
    n = rng.randrange(1, 40)
    regions = [(rng.choice((1, 2, 3)), rng.randrange(0, 120), rng.randrange(1, 6))
               for _ in range(n)]
    path = tmp_path / "r.igvm"
    path.write_bytes(_file(regions))
    code = _code(igvm_check, path)
    assert (code == RELOCATION_REGIONS_OVERLAP) == _oracle(regions), (regions, code)
    if not _oracle(regions):  # else valid, or a mask-2-only region has no VBS context (-22)
        assert code in (0, -22)


def test_c_64000_regions(igvm_check, tmp_path):
    from tests.untrusted import hostile
    ok, bad = tmp_path / "ok.igvm", tmp_path / "bad.igvm"
    ok.write_bytes(hostile.relocation_regions(64_000))
    bad.write_bytes(hostile.relocation_regions(64_000, overlap_last=True))
    assert _code(igvm_check, ok) == 0
    assert _code(igvm_check, bad) == RELOCATION_REGIONS_OVERLAP
