"""Measurement benchmarks: launch digest of a 256 MiB IGVM image against raw hashlib.

Target (issue 6): the digest of a 256 MiB image at no less than 80% of the raw
hashlib throughput for the same bytes on the same machine.  "Same bytes" means
the page data where the prediction reads it: the memory-mapped file.  The
SEV/SEV-ES digest does one SHA-256 pass; the SNP digest does one SHA-384 per
4 KiB page plus one SHA-384 of a 112-byte PAGE_INFO per page, compared with one
SHA-384 pass over the same 256 MiB.

Figures (2-core VM shared with other jobs, load ~4.5, 2026-11-26): SEV 90% of
raw SHA-256 (0.28 s vs 0.26 s); SNP 75% of raw SHA-384 single-threaded
(0.79 s vs 0.60 s), 77% with two content-hashing threads on the loaded machine.
With the C fold (2026-12-02, load 1.9-3.9): SEV 89%, SNP single-threaded 84%
(0.294 s vs 0.247 s; the rest is the launch plan and the VMSA).  After the
lazy directive model (2026-12-02, idle): SEV 62-71% (a strict xfail then),
SNP 75% on one thread and 125% on two.  Since the one streaming walk (issue
19: page headers replayed as one bulk-read run, its file data hashed in one
call) the README has the figures.

Run: ``.venv/bin/python -m pytest benchmarks/test_measure_bench.py --benchmark-only -s``.
"""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import PlatformType
from harness.igvm.parser import load
from harness.measure.launch import predict

PAGES = 65_536
PAGE = 4096
SIZE = PAGES * PAGE


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    payload = os.urandom(SIZE)  # every page differs: no file-data sharing
    b = IgvmBuilder()
    b.platform(PlatformType.SEV)
    b.platform(PlatformType.SEV_SNP)
    b.pages(0x100000, payload)
    path = tmp_path_factory.mktemp("measure-bench") / "big.igvm"
    b.write(path)
    f = load(path)
    region = memoryview(f.buffer)[len(f.buffer) - SIZE:]  # file data: the pages, in order
    assert hashlib.sha256(region).digest() == hashlib.sha256(payload).digest()
    return f, region, payload


def _best(fn, rounds: int = 5, clock=time.perf_counter) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return best


def test_raw_sha256_mapped(benchmark, image):
    _f, region, _p = image
    benchmark.pedantic(lambda: hashlib.sha256(region).digest(), rounds=5, iterations=1)


def test_predict_sev(benchmark, image):
    f, _region, payload = image
    pred = benchmark.pedantic(predict, args=(f, "sev", 1), rounds=5, iterations=1)
    # a plain page image: the SEV digest is SHA-256 of the pages in order
    assert pred.digest == hashlib.sha256(payload).digest()


def test_raw_sha384_mapped(benchmark, image):
    _f, region, _p = image
    benchmark.pedantic(lambda: hashlib.sha384(region).digest(), rounds=3, iterations=1)


def test_predict_snp(benchmark, image):
    f, _region, _p = image
    benchmark.pedantic(predict, args=(f, "sev-snp", 1), rounds=3, iterations=1)


@pytest.mark.parametrize("platform,algo,workers", [
    ("sev", hashlib.sha256, 1), ("sev-snp", hashlib.sha384, 1), ("sev-snp", hashlib.sha384, 2)])
def test_throughput_ratio(benchmark, image, platform, algo, workers, monkeypatch):
    """Raw hashlib and the prediction timed in alternation (best of 7 each, same
    mapping), so load from other processes hits both alike.  ``workers`` is the
    number of threads hashing SNP page contents (SEV is one sequential pass).

    One thread: the figure is thread CPU time (``time.thread_time``: the
    prediction runs on the calling thread, and other load on the machine
    hardly moves it); two threads need wall time and two idle cores.  The
    prediction replays the parsed file's headers (harness.igvm.walk: the
    65,536 page headers are one regular run, read in bulk) and hashes the
    run of file data in one call (SEV) or in 2 MiB views to the C fold (SNP)."""
    from harness.measure import measure_snp
    if workers > 1:
        cpus, load = os.cpu_count() or 1, os.getloadavg()[0]
        if cpus < workers or load > cpus - workers + 1:
            pytest.skip(f"{workers} idle CPUs needed for the threaded figure (load {load:.1f} on {cpus} CPUs)")
    monkeypatch.setattr(measure_snp, "DEFAULT_WORKERS", workers)
    clock = time.thread_time if workers == 1 else time.perf_counter
    f, region, payload = image
    raw, ours, raw_memory = [], [], []
    for _ in range(7):
        raw.append(_best(lambda: algo(region).digest(), 1, clock))
        ours.append(_best(lambda: predict(f, platform, 1), 1, clock))
    raw_memory.append(_best(lambda: algo(payload).digest(), 3, clock))
    pred = benchmark.pedantic(predict, args=(f, platform, 1), rounds=1, iterations=1)
    ratio = min(raw) / min(ours)
    benchmark.extra_info.update({
        "MiB": SIZE >> 20, "workers": workers, "clock": clock.__name__,
        "raw_mapped_min_s": round(min(raw), 4),
        "raw_in_memory_min_s": round(min(raw_memory), 4), "predict_min_s": round(min(ours), 4),
        "ratio_vs_mapped": round(ratio, 3), "ratio_vs_in_memory": round(min(raw_memory) / min(ours), 3),
        "MiB_per_s": round((SIZE >> 20) / min(ours), 1), "launch_updates": pred.updates,
        "load": round(os.getloadavg()[0], 1)})
    print(f"\n{platform} workers={workers} ({clock.__name__}): predict {min(ours):.3f}s, raw {min(raw):.3f}s "
          f"(in memory {min(raw_memory):.3f}s): {ratio:.0%} of raw hashlib throughput "
          f"(load {os.getloadavg()[0]:.1f})")
    # SNP single-threaded: per page the firmware's chain needs a padding block for
    # the page hash and two blocks for PAGE_INFO (3 extra SHA-384 blocks per 33),
    # so one thread tops out near 91% before any Python cost; target 85% there
    # (issue 19), 80% for SEV and for SNP with page contents hashed on two threads.
    target = 0.85 if (platform == "sev-snp" and workers == 1) else 0.8
    assert ratio >= target, f"{platform}: {ratio:.0%} of raw hashlib throughput (target {target:.0%})"


def test_one_pass_measure_vs_raw(benchmark, image, tmp_path_factory):
    """``igvm-harness measure``'s own path: validate and measure in one pass
    over the mapped file (launch.measure), against raw SHA-256 of the same
    mapped pages, thread CPU time, best of 7 interleaved (recorded)."""
    from harness.igvm.parser import read
    from harness.measure.launch import measure

    f, region, payload = image
    path = tmp_path_factory.mktemp("one-pass") / "big.igvm"
    from harness.igvm.builder import serialize
    path.write_bytes(serialize(f))
    data = read(path)
    raw, ours = [], []
    for _ in range(7):
        raw.append(_best(lambda: hashlib.sha256(region).digest(), 1, time.thread_time))
        ours.append(_best(lambda: measure(data, "sev", 1), 1, time.thread_time))
    _f, pred = benchmark.pedantic(measure, args=(data, "sev", 1), rounds=1, iterations=1)
    assert pred.digest == hashlib.sha256(payload).digest()
    ratio = min(raw) / min(ours)
    benchmark.extra_info.update({"raw_s": round(min(raw), 4), "measure_s": round(min(ours), 4),
                                 "ratio": round(ratio, 3), "load": round(os.getloadavg()[0], 1)})
    print(f"\nsev one pass (parse + validate + plan + digest): {min(ours):.3f}s vs raw "
          f"{min(raw):.3f}s: {ratio:.0%} (load {os.getloadavg()[0]:.1f})")


# ---------------------------------------------------------------- issue 12
# The SNP chain on its own, over the same bytes as one raw SHA-384 pass.
# Limit of one thread: per 4 KiB page the chain hashes 32 blocks of page data,
# one padding block for the page hash and two blocks of PAGE_INFO (0x70 bytes +
# padding), 35 in all, so one thread reaches at most 32/35 = 91.4 % of raw
# hashlib; two threads at most 2 x 32/35 = 1.83x (the 2 PAGE_INFO blocks stay
# sequential: 64/35).  Single-thread figures use the thread's CPU time
# (time.thread_time), which other load on the machine hardly changes; the
# two-thread figure needs wall time and so two idle cores.
#
# Paths: "C fold" = harness/native/snpfold.c (igvm-harness native build; the
# fixture builds it when absent), "Python" = the pure-Python fallback.

CHAIN_PAGES = 32_768  # 128 MiB
CHAIN_LIMIT = 32 / 35


@pytest.fixture(scope="module")
def chain_pages():
    data = os.urandom(CHAIN_PAGES * PAGE)
    view = memoryview(data)
    return data, [view[i * PAGE:(i + 1) * PAGE] for i in range(CHAIN_PAGES)]


@pytest.fixture(scope="module")
def fold():
    from harness.errors import HarnessError
    from harness.native import build

    try:
        return build.ensure("_snpfold")
    except HarnessError as exc:
        pytest.skip(f"C fold not built: {exc}")


@pytest.fixture
def path(request, monkeypatch):
    """Pin the chain path: "native" (the C fold) or "python" (fallback)."""
    from harness.measure import measure_snp

    monkeypatch.setattr(measure_snp, "_native",
                        request.getfixturevalue("fold") if request.param == "native" else False)
    return request.param


def _best_of(fn, clock, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return best


def _chain(pages, workers: int):
    from harness.measure.measure_snp import SnpLaunchDigest

    ld = SnpLaunchDigest()
    ld.normal_page_list(0x100000, pages, PAGE, workers=workers)
    return ld


def _interleaved(data, pages, workers: int, clock, rounds: int = 9) -> tuple[float, float, float]:
    """Best raw SHA-384, best chain time and (workers > 1) best raw SHA-384 of
    the two halves on two threads, measured in alternation."""
    raw, ours, raw2 = [], [], [float("inf")]
    for _ in range(rounds):
        raw.append(_best_of(lambda: hashlib.sha384(data).digest(), clock, 1))
        ours.append(_best_of(lambda: _chain(pages, workers), clock, 1))
        if workers > 1:
            raw2.append(_best_of(lambda: _raw_two_threads(data), clock, 1))
    return min(raw), min(ours), min(raw2)


def _raw_two_threads(data) -> None:
    """One SHA-384 of each half of ``data``, on two threads (hashlib releases the GIL)."""
    import threading

    view = memoryview(data)
    half = len(view) // 2
    t = threading.Thread(target=lambda: hashlib.sha384(view[half:]).digest())
    t.start()
    hashlib.sha384(view[:half]).digest()
    t.join()


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f} on {os.cpu_count()} CPUs"


@pytest.mark.parametrize("path", ["native", "python"], indirect=True)
def test_snp_chain_single_thread_vs_raw(benchmark, chain_pages, path):
    """Target (issue 12): the C fold at >= 85 % of raw single-thread hashlib
    (limit 91.4 %); the Python fallback's figure is reported, not a target.

    Measured (128 MiB, thread CPU time, best of 9 interleaved; 2026-12-02,
    ``uptime`` load 2.8-6.2 from other jobs on 2 CPUs): C fold 88.7-90.3 %
    (97-99 % of the limit), Python 76 %.
    """
    data, pages = chain_pages
    raw, ours, _ = _interleaved(data, pages, 1, time.thread_time)
    ld = benchmark.pedantic(_chain, args=(pages, 1), rounds=1, iterations=1)
    assert ld.paths == {path: CHAIN_PAGES}
    ratio = raw / ours
    benchmark.extra_info.update({"path": path, "raw_cpu_s": round(raw, 4), "chain_cpu_s": round(ours, 4),
                                 "ratio": round(ratio, 3), "ratio_of_limit": round(ratio / CHAIN_LIMIT, 3),
                                 "load": round(os.getloadavg()[0], 1)})
    print(f"\nSNP chain ({path}), 1 thread: {ratio:.1%} of raw SHA-384 ({ratio / CHAIN_LIMIT:.1%} of the "
          f"{CHAIN_LIMIT:.1%} limit); CPU {ours:.3f} s vs raw {raw:.3f} s ({_load()})")
    if path == "native":
        assert ratio >= 0.85, f"{ratio:.1%} of raw hashlib (target 85 %)"


@pytest.mark.parametrize("path", ["native", "python"], indirect=True)
def test_snp_chain_two_threads_vs_raw(benchmark, chain_pages, path):
    """Target (issue 12): the C fold on 2 threads at >= 1.5x raw single-thread
    hashlib on 2 idle cores (limit 1.83x); Python's figure is reported.

    Measured (128 MiB, wall time, best of 7 interleaved, 2026-12-02 00:21-00:48,
    9 samples with both CPUs >= 90 % idle by /proc/stat before, ``uptime`` 1-minute
    load 1.5-4.4 from the minutes before): C fold 1.66-1.76x (1.74-1.76x where
    two raw hashlib threads over the halves reached >= 1.9x; limit 64/35 = 1.83x).  With
    other load (load 3-8) ~0.9-1.0x, like raw hashlib on 2 threads, so the
    assertion needs the 1-minute load below 1.0; the printed line also gives
    raw hashlib's own 2-thread figure at that moment.
    """
    cpus, load = os.cpu_count() or 1, os.getloadavg()[0]
    data, pages = chain_pages
    raw, ours, raw2 = _interleaved(data, pages, 2, time.perf_counter)
    assert _chain(pages, 2).ld == _chain(pages, 1).ld
    ld = benchmark.pedantic(_chain, args=(pages, 2), rounds=1, iterations=1)
    assert ld.paths == {path + "-threads": CHAIN_PAGES}
    ratio = raw / ours
    benchmark.extra_info.update({"path": path, "raw_wall_s": round(raw, 4), "chain_wall_s": round(ours, 4),
                                 "raw_two_threads_wall_s": round(raw2, 4), "speedup_vs_raw": round(ratio, 3),
                                 "vs_raw_two_threads": round(raw2 / ours, 3), "load": round(load, 1)})
    # raw2: what two hashlib threads over the two halves of the same bytes
    # reach at this moment -- the machine's own parallel ceiling, which says
    # how much of a missed 1.5x is other load (ideal chain: 32/35 of it)
    print(f"\nSNP chain ({path}), 2 threads: {ratio:.2f}x raw single-thread SHA-384 "
          f"(wall {ours:.3f} s vs {raw:.3f} s; raw hashlib on 2 threads {raw / raw2:.2f}x, the chain "
          f"{raw2 / ours:.0%} of it; {_load()})")
    if path != "native":
        return
    if cpus < 2 or load > 1.0:
        pytest.skip(f"2 idle CPUs needed for the threaded figure ({_load()}; measured {ratio:.2f}x)")
    assert ratio >= 1.5, f"{ratio:.2f}x raw hashlib on 2 threads (target 1.5x)"
