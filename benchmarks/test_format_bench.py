"""Format-layer benchmarks: build, parse and validate a 65,536-page
(256 MiB) IGVM file.

Run with ``pytest benchmarks/test_format_bench.py --benchmark-only``.
Reference figures (issue 2): the Rust reference parser reads such a file
in about 0.10 s on a 2-core machine at about 2.1x the file size in memory;
targets here are parse+validate within 0.2 s and at most file size +
64 MiB of memory (page data is never copied: the model holds views).
"""

from __future__ import annotations

import resource
import tracemalloc

import pytest

from harness.igvm import model as m
from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import KVM_VMSA_GPA, PlatformType
from harness.igvm.parser import load, scan

PAGES = 65_536
PAGE = 4096
MIB = 1 << 20


def _payload() -> bytes:
    """256 MiB where every page differs (no file-data sharing)."""
    buf = bytearray(PAGES * PAGE)
    for i in range(PAGES):
        buf[i * PAGE:i * PAGE + 8] = i.to_bytes(8, "little")
    return bytes(buf)


def _build(payload: bytes) -> bytes:
    b = IgvmBuilder()
    snp = b.platform(PlatformType.SEV_SNP)
    b.platform(PlatformType.NATIVE)
    b.pages(0x100000, payload)
    b.vp_context(KVM_VMSA_GPA, bytes(PAGE), mask=snp)
    return b.build()


@pytest.fixture(scope="module")
def payload() -> bytes:
    return _payload()


@pytest.fixture(scope="module")
def igvm_file(payload, tmp_path_factory):
    data = _build(payload)
    path = tmp_path_factory.mktemp("bench") / "big.igvm"
    path.write_bytes(data)
    return data, path


def _check(f: m.IgvmFile, violations) -> None:
    assert violations == []
    pages = f.page_data()
    assert len(pages) == PAGES
    assert bytes(pages[-1].data[:8]) == (PAGES - 1).to_bytes(8, "little")


def test_build(benchmark, payload):
    data = benchmark.pedantic(_build, args=(payload,), rounds=3, iterations=1)
    assert len(data) > PAGES * PAGE


def test_parse_and_validate_bytes(benchmark, igvm_file):
    data, _ = igvm_file
    f, violations = benchmark.pedantic(scan, args=(data,), rounds=5, iterations=1)
    _check(f, violations)


def test_parse_and_validate_mmap(benchmark, igvm_file):
    _, path = igvm_file

    def run():
        from harness.igvm.parser import read
        return scan(read(path))

    f, violations = benchmark.pedantic(run, rounds=5, iterations=1)
    _check(f, violations)


def test_parse_memory(benchmark, igvm_file):
    """Python allocations while loading the 256 MiB file (memory-mapped):
    headers only, no page data copies."""
    _, path = igvm_file
    file_size = path.stat().st_size

    def run():
        tracemalloc.start()
        try:
            f = load(path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return f, peak

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    f, peak = benchmark.pedantic(run, rounds=1, iterations=1)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    benchmark.extra_info.update({"file_mib": file_size / MIB, "peak_alloc_mib": peak / MIB,
                                 "maxrss_growth_mib": (rss_after - rss_before) / MIB})
    assert len(f.page_data()) == PAGES
    assert f.page_data()[0].data.obj is f.buffer  # a view into the mapping
    assert peak <= 64 * MIB, f"{peak / MIB:.1f} MiB allocated while parsing"
