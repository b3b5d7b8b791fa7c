"""Benchmarks (not timed tests) of the runner.

* per-case cost: one reset-vector IGVM boot through the harness
  (``runner.run``: QMP listen/accept/negotiate, -S + cont, pexpect console,
  log directory, classification) against the raw QEMU command for the same
  guest (no QMP, console to a file).  Target: harness <= 1.3x raw.
* the whole native suite under ``-n 2`` (target: <= 30 s for 200 cases).

Run: ``.venv/bin/python -m pytest benchmarks/ --benchmark-only``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.fixtures.native import reset_vector_image
from harness.qemu.cmdline import QemuCommand
from harness.qemu.outcome import Status
from harness.qemu.runner import run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def image(guest_images, tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("bench") / "reset.igvm"
    p.write_bytes(reset_vector_image(guest_images["reset16"]))
    return p


@pytest.fixture(params=["tcg", "kvm"])
def bench_accel(request, qemu_caps):
    why = qemu_caps.missing(request.param)
    if why:
        pytest.skip(why)
    return request.param


def _raw_argv(qemu: str, image: Path, accel: str, console: Path) -> list[str]:
    return [qemu, "-nodefaults", "-no-user-config", "-display", "none",
            "-machine", "q35,igvm-cfg=igvm0", "-object", f"igvm-cfg,id=igvm0,file={image}",
            "-accel", accel, "-m", "128M", "-smp", "1",
            "-chardev", f"file,id=con0,path={console}", "-device", "isa-serial,chardev=con0",
            "-device", "isa-debug-exit,iobase=0x501", "-no-reboot"]


def test_bench_raw_qemu(benchmark, qemu_binary, image, bench_accel, tmp_path):
    console = tmp_path / "console.txt"
    argv = _raw_argv(qemu_binary, image, bench_accel, console)

    def once():
        rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL).returncode
        assert rc == 1 and b"IGVMT done" in console.read_bytes()

    benchmark.pedantic(once, rounds=20, warmup_rounds=2)


def test_bench_harness_boot(benchmark, qemu_binary, image, bench_accel, tmp_path):
    n = iter(range(10**6))

    def once():
        out = run(QemuCommand(qemu_binary, accel=bench_accel, igvm=str(image)),
                  tmp_path / f"r{next(n)}", timeout=30)
        assert out.status is Status.BOOTED and out.report.done

    benchmark.pedantic(once, rounds=20, warmup_rounds=2)


def test_bench_overhead_ratio(benchmark, qemu_binary, image, bench_accel, tmp_path):
    """Raw and harness boots interleaved (so load drift on a shared machine
    hits both alike); extra_info carries median(harness) / median(raw)."""
    import statistics
    console = tmp_path / "console.txt"
    argv = _raw_argv(qemu_binary, image, bench_accel, console)
    raw, har, n = [], [], iter(range(10**6))

    def pair():
        t0 = time.perf_counter()
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        t1 = time.perf_counter()
        out = run(QemuCommand(qemu_binary, accel=bench_accel, igvm=str(image)),
                  tmp_path / f"r{next(n)}", timeout=30)
        t2 = time.perf_counter()
        assert out.status is Status.BOOTED
        raw.append(t1 - t0)
        har.append(t2 - t1)

    benchmark.pedantic(pair, rounds=25, warmup_rounds=2)
    ratio = statistics.median(har) / statistics.median(raw)
    benchmark.extra_info.update(raw_ms=round(statistics.median(raw) * 1000, 1),
                                harness_ms=round(statistics.median(har) * 1000, 1),
                                ratio=round(ratio, 2))
    print(f"\n{bench_accel}: raw {statistics.median(raw)*1000:.1f} ms, harness "
          f"{statistics.median(har)*1000:.1f} ms, ratio {ratio:.2f} (target <= 1.3)")


def test_bench_native_suite_n2(benchmark, qemu_binary, tmp_path):
    """Wall time of ``pytest suites/native -n 2`` (one round)."""
    result = {}

    def once():
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "pytest", "suites/native", "-n", "2", "-q",
                               "-p", "no:cacheprovider", "--qemu", qemu_binary,
                               "--basetemp", str(tmp_path / "bt")],
                              cwd=REPO, capture_output=True, text=True)
        result["wall"] = time.monotonic() - t0
        result["tail"] = proc.stdout.strip().splitlines()[-1]
        assert proc.returncode == 0, proc.stdout[-2000:]

    benchmark.pedantic(once, rounds=1, iterations=1)
    m = re.search(r"(\d+) passed", result["tail"])
    benchmark.extra_info["passed"] = int(m.group(1)) if m else 0
    benchmark.extra_info["summary"] = result["tail"]
