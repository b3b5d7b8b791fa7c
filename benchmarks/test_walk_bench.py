"""Issue 19: the commands on the 65,536-page file, each a fresh CLI process.

``certify --no-boot`` reads the headers once (tests/report/test_certify_one_pass.py
counts the passes); here its time and peak resident memory (VmHWM), and those of
``validate``, ``inspect`` and ``measure`` on the same 256 MiB file (four
platforms, one run of distinct pages).  Memory is asserted as a bound (file +
64 MiB over the same command's idle run), time is recorded: timings are not tests.

Run: ``.venv/bin/python -m pytest -n 0 benchmarks/test_walk_bench.py --benchmark-only -s``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.untrusted import hostile

MIB = 1 << 20
PAGES = 65_536

CHILD = ("import sys\nfrom harness.cli import main\n"
         "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
         "sys.stdout.flush()\n"
         "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM:')][0]\n"
         "sys.stderr.write('\\nPEAK %s\\n' % hwm.split()[1])\n")

COMMANDS = {
    "certify": lambda f: ["certify", f, "--no-boot", "-q", "--output", "out"],
    "validate": lambda f: ["validate", f],
    "inspect": lambda f: ["inspect", f],
    "measure-snp": lambda f: ["measure", f, "--platform", "sev-snp"],
    "measure-sev": lambda f: ["measure", f, "--platform", "sev"],
}


def _run(cwd, argv) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and peak resident bytes of one CLI process."""
    before = os.times()
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", CHILD, *map(str, argv)], cwd=cwd,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         stdin=subprocess.DEVNULL, timeout=600)
    wall = time.perf_counter() - t
    after = os.times()
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return wall, cpu, int(res.stderr.splitlines()[-1].split()[1]) * 1024


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("walk-bench") / "pages.igvm"
    path.write_bytes(hostile.distinct_pages(PAGES))
    return path


@pytest.fixture(scope="module")
def idle(tmp_path_factory):
    d = tmp_path_factory.mktemp("walk-idle")
    small = d / "small.igvm"
    small.write_bytes(hostile.distinct_pages(4))
    return {name: _run(d, argv(small))[2] for name, argv in COMMANDS.items()}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_on_the_65536_page_file(benchmark, tmp_path, image, idle, command):
    runs = []
    for _ in range(3):  # best of 3: the first also warms the page cache
        runs.append(_run(tmp_path, COMMANDS[command](image)))
    benchmark.pedantic(lambda: runs.append(_run(tmp_path, COMMANDS[command](image))),
                       rounds=1, iterations=1)
    wall = min(r[0] for r in runs)
    cpu = min(r[1] for r in runs)
    peak = max(r[2] for r in runs)
    size = image.stat().st_size
    load = os.getloadavg()[0]
    benchmark.extra_info.update({"file_mib": round(size / MIB), "wall_s": round(wall, 3),
                                 "cpu_s": round(cpu, 3), "peak_mib": round(peak / MIB, 1),
                                 "peak_over_idle_mib": round((peak - idle[command]) / MIB, 1),
                                 "load": round(load, 1)})
    print(f"\n{command} on {PAGES} pages ({size / MIB:.0f} MiB): {wall:.2f} s wall, {cpu:.2f} s CPU, "
          f"peak {peak / MIB:.0f} MiB ({(peak - idle[command]) / MIB:+.0f} over idle); load {load:.1f}")
    assert peak <= idle[command] + size + 64 * MIB
