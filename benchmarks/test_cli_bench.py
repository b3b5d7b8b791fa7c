"""CLI wall time (issue 12): start-up, and ``igvm-harness measure`` against sev-snp-measure.

Each figure is a whole process, as a user runs it (interpreter start-up,
imports, work, exit), through the venv's console scripts.  The commands of a
comparison run interleaved (A B A B ...) so that load from other processes
hits both alike; the ratio is of the medians.

Firmware: Debian's OVMF.amdsev.fd as ``igvm-harness firmware fetch``
installs it (harness.assets ``ovmf-amdsev``), and an IGVM wrap of it made with
harness.igvm.wrap_ovmf.  sev-snp-measure (PyPI, the dev extras) measures the
classic ``-bios`` launch of the same file; the harness measures both the wrap
and (``measure FW.fd``) the classic launch, whose digest must equal
sev-snp-measure's, so the two programs are known to do the same work.

Both ratios must be at most 0.9 (issue 19; issue 12 asked for 1.0): the IGVM
wrap is the issue's target, the classic launch the like-for-like comparison
(the same file, the same digest).  The figure is the median of 8 per-round
ratios of alternating runs, so that a load that changes over the minutes
hits both sides of each ratio alike.  ``python -c pass`` runs in the same rounds as the floor both
programs share (interpreter start-up and exit).

Run: ``.venv/bin/python -m pytest benchmarks/test_cli_bench.py --benchmark-only -s``.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
HARNESS = shutil.which("igvm-harness", path=str(BIN)) or shutil.which("igvm-harness")
PEER = shutil.which("sev-snp-measure", path=str(BIN)) or shutil.which("sev-snp-measure")
ROUNDS = 21
#: As installed: bytecode caches written and read, whatever PYTHONDONTWRITEBYTECODE says here
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _child_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _run(argv: list[str]) -> tuple[float, float, str]:
    """Wall and CPU (user + system) seconds of one process, and its stdout.

    The CPU figure hardly moves with other load on the machine; the wall
    figure is what a user waits."""
    cpu = _child_cpu()
    t = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL, env=ENV)
    dt = time.perf_counter() - t
    assert res.returncode == 0, f"{argv}: {res.stderr[-400:]}"
    return dt, _child_cpu() - cpu, res.stdout


def _wall(argv: list[str]) -> tuple[float, str]:
    dt, _cpu, out = _run(argv)
    return dt, out


def _interleaved(commands: dict[str, list[str]], rounds: int = ROUNDS,
                 cpu: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in commands}
    for argv in commands.values():  # warm-up (bytecode caches)
        _run(argv)
    for _ in range(rounds):
        for name, argv in commands.items():
            dt, c, _out = _run(argv)
            times[name].append(dt)
            if cpu is not None:
                cpu.setdefault(name, []).append(c)
    return times


def _load() -> str:
    return f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


@pytest.fixture(scope="module")
def amdsev(tmp_path_factory):
    from harness import assets

    try:
        fw = assets.path("ovmf-amdsev")
    except assets.AssetMissing as exc:
        pytest.skip(str(exc))
    try:
        from harness.igvm import ovmf, wrap_ovmf
    except ImportError:
        pytest.skip("harness.igvm.wrap_ovmf not in this tree (the ovmf helper's branch)")
    data = fw.read_bytes()
    wrap = tmp_path_factory.mktemp("cli-bench") / "ovmf-snp.igvm"
    wrap.write_bytes(wrap_ovmf.wrap(ovmf.read(data, name=fw.name), platforms=("sev-snp",),
                                    vcpus=1))
    return fw, wrap


@pytest.mark.skipif(HARNESS is None, reason="no igvm-harness console script")
def test_help_wall(benchmark):
    times = _interleaved({"help": [HARNESS, "--help"]}, rounds=ROUNDS)["help"]
    benchmark.pedantic(_wall, args=([HARNESS, "--help"],), rounds=1, iterations=1)
    benchmark.extra_info.update({"median_s": round(statistics.median(times), 4),
                                 "min_s": round(min(times), 4), "load": _load()})
    print(f"\nigvm-harness --help: median {statistics.median(times) * 1000:.0f} ms, "
          f"min {min(times) * 1000:.0f} ms ({_load()})")


#: Issue 19: both ratios at most 0.9 (issue 12 asked for 1.0).
TARGET = 0.9
#: Alternating rounds for the issue's figure ("median of 8").
PAIRED_ROUNDS = 8


def _paired(commands: dict[str, list[str]], peer: str, rounds: int,
            cpu: dict[str, list[float]]) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Alternating runs (every command once a round, in order), each round's
    ratio to the peer's run of the same round: load that changes over the
    minutes hits both sides of a ratio alike."""
    times = _interleaved(commands, rounds=rounds, cpu=cpu)
    ratios = {k: [a / b for a, b in zip(v, times[peer])] for k, v in times.items() if k != peer}
    return times, ratios


@pytest.mark.skipif(HARNESS is None or PEER is None,
                    reason="igvm-harness or sev-snp-measure (dev extras) not installed")
def test_measure_vs_sev_snp_measure(benchmark, amdsev):
    """Harness SNP measure of the 4 MiB OVMF wrap (and of the classic launch)
    against sev-snp-measure on the same firmware, whole processes, alternating
    runs: the median of the 8 per-round ratios at most 0.9 (issue 19)."""
    fw, wrap = amdsev
    cmds = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "harness-igvm": [HARNESS, "measure", str(wrap), "--platform", "sev-snp", "--vcpus", "1"],
        "harness-classic": [HARNESS, "measure", str(fw), "--platform", "sev-snp", "--vcpus", "1"],
        "sev-snp-measure": [PEER, "--mode", "snp", "--vcpus", "1", "--vcpu-type", "EPYC-v4",
                            "--ovmf", str(fw)],
    }
    # the same work: the classic launch digest of both programs agrees
    peer_digest = _wall(cmds["sev-snp-measure"])[1].split()[-1].strip()
    classic_out = _wall(cmds["harness-classic"])[1]
    assert peer_digest in classic_out, (peer_digest, classic_out)
    cpu: dict[str, list[float]] = {}
    times, ratios = _paired(cmds, "sev-snp-measure", PAIRED_ROUNDS, cpu)
    benchmark.pedantic(_wall, args=(cmds["harness-igvm"],), rounds=1, iterations=1)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    ratio = statistics.median(ratios["harness-igvm"])
    ratio_classic = statistics.median(ratios["harness-classic"])
    ratio_cpu = med_cpu["harness-igvm"] / med_cpu["sev-snp-measure"]
    ratio_cpu_classic = med_cpu["harness-classic"] / med_cpu["sev-snp-measure"]
    benchmark.extra_info.update({
        **{f"{k}_median_s": round(v, 4) for k, v in med.items()},
        **{f"{k}_cpu_median_s": round(v, 4) for k, v in med_cpu.items()},
        "cpu_ratio_igvm_vs_peer": round(ratio_cpu, 3),
        "cpu_ratio_classic_vs_peer": round(ratio_cpu_classic, 3),
        **{f"{k}_min_s": round(min(v), 4) for k, v in times.items()},
        "ratio_igvm_vs_peer": round(ratio, 3), "ratio_classic_vs_peer": round(ratio_classic, 3),
        "firmware_bytes": fw.stat().st_size, "rounds": PAIRED_ROUNDS, "load": _load()})
    print(f"\nmedians of {PAIRED_ROUNDS} alternating rounds ({_load()}): "
          + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in med.items())
          + f"; harness/sev-snp-measure, median of the rounds' ratios = {ratio:.2f} (IGVM wrap), "
          f"{ratio_classic:.2f} (classic); CPU medians "
          + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in med_cpu.items())
          + f" = {ratio_cpu:.2f} / {ratio_cpu_classic:.2f}")
    assert ratio <= TARGET, f"igvm-harness measure (IGVM wrap) is {ratio:.2f}x sev-snp-measure's time"
    assert ratio_classic <= TARGET, (f"igvm-harness measure FW.fd is {ratio_classic:.2f}x "
                                     "sev-snp-measure's time")
