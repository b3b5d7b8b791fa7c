"""Issue 13: time and memory of every command over hostile files of growing size.

Each command (validate, inspect, measure, certify --no-boot, matrix --dry-run)
runs as the CLI in a fresh process on files that grow 4x per step; the
benchmark times the process and records its peak resident memory (VmHWM).
Targets: memory within file size + 64 MiB over the interpreter's own
footprint (asserted: a bound, not a timing), and time growing linearly with
the file: ``extra_info["us_per_kib"]`` stays flat across the sizes of one
kind (recorded, not asserted: timings are not tests).  Plus the relocation
overlap check on 64,000 regions in Python and in the C library (target
< 1 s each).

Run: ``.venv/bin/python -m pytest benchmarks/test_untrusted_bench.py --benchmark-only``
(add ``-k 'validate and bad'`` for one row).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import PlatformType
from tests.untrusted import hostile

MIB = 1 << 20
ROOT = Path(__file__).resolve().parents[1]


def _pages(n: int) -> bytes:
    b = IgvmBuilder()
    b.platform(PlatformType.SEV_SNP)
    b.platform(PlatformType.SEV)
    payload = bytearray(n * 4096)
    for i in range(n):
        payload[i * 4096:i * 4096 + 8] = i.to_bytes(8, "little")
    b.pages(0x100000, bytes(payload))
    return b.build()


def _zero_pages(n: int) -> bytes:
    return hostile.zero_pages(n)


#: kind -> (maker, sizes growing 4x)
KINDS = {
    "pages": (_pages, (256, 1024, 4096)),                 # 1, 4, 16 MiB of page data
    "zero-pages": (_zero_pages, (8192, 32768, 131072)),  # 0.25, 1, 4 MiB of headers
    "bad-headers": (hostile.bad_headers, (250_000, 1_000_000, 4_000_000)),  # 2, 8, 32 MB
    "relocations": (lambda n: hostile.relocation_regions(n, overlap_last=True),
                    (4000, 16000, 64000)),
    "parameter-area": (lambda n: hostile.parameter_area(n << 30), (1, 4, 16)),  # 1-16 GiB declared
}

COMMANDS = {
    "validate": lambda f: ["validate", f],
    "inspect": lambda f: ["inspect", f],
    "measure": lambda f: ["measure", f, "--platform", "sev-snp"],
    "certify": lambda f: ["certify", f, "--no-boot", "-q", "--output", "out"],
}

CHILD = ("import sys\nfrom harness.cli import main\n"
         "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
         "sys.stdout.flush()\n"
         "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM:')][0]\n"
         "sys.stderr.write('\\nPEAK %s\\n' % hwm.split()[1])\n")


def _run(cwd, argv, env: dict | None = None) -> int:
    res = subprocess.run([sys.executable, "-c", CHILD, *map(str, argv)], cwd=cwd,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         stdin=subprocess.DEVNULL, timeout=1800,
                         env={**os.environ, **env} if env else None)
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    return int(res.stderr.splitlines()[-1].split()[1]) * 1024


@pytest.fixture(scope="module")
def idle_peak(tmp_path_factory) -> dict[str, int]:
    d = tmp_path_factory.mktemp("idle")
    small = d / "small.igvm"
    small.write_bytes(hostile.parameter_area(0x1000))
    return {name: _run(d, argv(small)) for name, argv in COMMANDS.items()}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    cache: dict = {}

    def get(kind: str, n: int) -> Path:
        if (kind, n) not in cache:
            path = tmp_path_factory.mktemp(kind) / f"{kind}-{n}.igvm"
            path.write_bytes(KINDS[kind][0](n))
            cache[kind, n] = path
        return cache[kind, n]
    return get


@pytest.mark.parametrize("step", [0, 1, 2])
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_on_growing_file(benchmark, tmp_path, files, idle_peak, command, kind, step):
    path = files(kind, KINDS[kind][1][step])
    size = path.stat().st_size
    peaks = []
    benchmark.pedantic(lambda: peaks.append(_run(tmp_path, COMMANDS[command](path))),
                       rounds=1, iterations=1)
    peak = max(peaks)
    seconds = benchmark.stats.stats.max
    benchmark.extra_info.update({
        "file_kib": size // 1024, "peak_over_idle_mib": round((peak - idle_peak[command]) / MIB, 1),
        "us_per_kib": round(seconds * 1e6 / max(1, size / 1024), 2)})
    assert peak <= idle_peak[command] + size + 64 * MIB, (
        f"{command} on {kind} ({size / MIB:.1f} MiB): peak {peak / MIB:.0f} MiB, "
        f"idle {idle_peak[command] / MIB:.0f} MiB")


def _large_zero_pages(n: int) -> bytes:
    b = IgvmBuilder()
    b.platform(PlatformType.SEV_SNP)
    b.zero_pages(0x40000000, n, large=True)
    return b.build()


@pytest.mark.parametrize("count", [1024, 4096, 16384])
def test_measure_snp_2mib_zero_pages(benchmark, tmp_path, idle_peak, count):
    """512 PAGE_INFOs per 32-byte header: the most work per file byte SNP has
    (linear, ~16 4 KiB units per byte); memory stays bounded (the chain is fed
    in slices, not one list entry per unit of the whole run)."""
    path = tmp_path / "z2m.igvm"
    path.write_bytes(_large_zero_pages(count))
    peaks = []
    benchmark.pedantic(lambda: peaks.append(_run(tmp_path, COMMANDS["measure"](path))),
                       rounds=1, iterations=1)
    size = path.stat().st_size
    benchmark.extra_info.update({"file_kib": size // 1024, "units": count * 512,
                                 "us_per_unit": round(benchmark.stats.stats.max * 1e6 / (count * 512), 2)})
    assert max(peaks) <= idle_peak["measure"] + size + 64 * MIB


#: Header-only files (issue 13's known gap, closed by the lazy directive
#: model): kind -> (maker, bytes per header).  Zero pages are 32-byte
#: PAGE_DATA headers without file data; VP_COUNT parameters are 16-byte
#: headers the whole-file rules read; relocation regions (56 bytes) feed
#: the overlap check.
HEADER_ONLY = {"zero-pages": (hostile.zero_pages, 32),
               "vp-count": (hostile.vp_count_parameters, 16),
               # VSM only: measure refuses the platform at once, the rest read it all
               "relocations": (lambda n, platform: hostile.relocation_regions(n), 56)}
HEADER_ONLY_MIB = (4, 16, 32)


def _matrix_certify(f) -> list[str]:
    """The certify step exactly as ``matrix run`` starts it for one cell
    (harness.report.matrix_run.certify_command), boot included (TCG: SNP
    stops at the hardware boundary)."""
    from harness.qemu import discover
    from harness.report.matrix_run import Cell, Qemu, certify_command
    found, _ = discover.find(None)
    cell = Cell(Qemu("bench", str(found.path) if found else None), "sev-snp", "tcg")
    cmd = certify_command(cell, Path(f), Path("matrix-out"))
    return cmd[cmd.index("certify"):]


HEADER_ONLY_COMMANDS = {
    **COMMANDS,
    "measure-python": COMMANDS["measure"],  # SNP chain without the C fold (below)
    "measure-sev": lambda f: ["measure", f, "--platform", "sev"],
    "matrix": _matrix_certify,
}
#: measure runs the SNP chain in the C fold when it is built (harness.native);
#: measure-python forces the Python chain (harness/native: IGVM_HARNESS_NATIVE)
HEADER_ONLY_ENV = {"measure-python": {"IGVM_HARNESS_NATIVE": "0"}}


@pytest.fixture(scope="module")
def header_only_idle(tmp_path_factory) -> dict[str, int]:
    d = tmp_path_factory.mktemp("idle-h")
    peaks = {}
    for name, argv in HEADER_ONLY_COMMANDS.items():
        small = d / f"small-{name}.igvm"
        small.write_bytes(hostile.zero_pages(16, platform=_platform_for(name)))
        peaks[name] = _run(d, argv(small), HEADER_ONLY_ENV.get(name))
    return peaks


def _platform_for(command: str) -> PlatformType:
    """measure-sev asks for an SEV platform; the other commands get SNP."""
    return PlatformType.SEV if command == "measure-sev" else PlatformType.SEV_SNP


@pytest.mark.parametrize("mib", HEADER_ONLY_MIB)
@pytest.mark.parametrize("kind", sorted(HEADER_ONLY))
@pytest.mark.parametrize("command", sorted(HEADER_ONLY_COMMANDS))
def test_header_only_file(benchmark, tmp_path_factory, header_only_idle, command, kind, mib):
    """A file made only of data-less headers stays within file + 64 MiB on
    every command (it did not with a Python object per header: ~170 B
    resident per 32-byte header); ``us_per_kib`` should stay flat across
    the sizes of one kind and command (recorded, not asserted)."""
    maker, per_header = HEADER_ONLY[kind]
    d = tmp_path_factory.mktemp(f"{kind}-{mib}")
    path = d / f"{kind}-{mib}.igvm"
    path.write_bytes(maker((mib * MIB) // per_header, platform=_platform_for(command)))
    size = path.stat().st_size
    idle = header_only_idle[command]
    peaks = []
    benchmark.pedantic(lambda: peaks.append(_run(d, HEADER_ONLY_COMMANDS[command](path),
                                                 HEADER_ONLY_ENV.get(command))),
                       rounds=1, iterations=1)
    peak = max(peaks)
    seconds = benchmark.stats.stats.max
    benchmark.extra_info.update({
        "file_mib": round(size / MIB, 1), "headers": size // per_header,
        "peak_over_idle_mib": round((peak - idle) / MIB, 1),
        "s_per_mib": round(seconds / (size / MIB), 3)})
    assert peak <= idle + size + 64 * MIB, (
        f"{command} on {kind} ({size / MIB:.1f} MiB): peak {peak / MIB:.0f} MiB, "
        f"idle {idle / MIB:.0f} MiB")


@pytest.mark.parametrize("images", [100, 1000, 10000])
def test_matrix_dry_run_on_growing_spec(benchmark, tmp_path, images):
    image = tmp_path / "v.igvm"
    image.write_bytes(hostile.parameter_area(0x1000))
    spec = tmp_path / "m.toml"
    spec.write_text('name = "bench"\nplatforms = ["native", "sev", "sev-es", "sev-snp"]\n'
                    'accels = ["kvm", "tcg"]\n'
                    + "images = [" + ", ".join(f'"{image}"' for _ in range(images)) + "]\n"
                    + "".join(f'[[qemu]]\nname = "q{i}"\n' for i in range(images // 100)))
    benchmark.pedantic(lambda: _run(tmp_path, ["matrix", "run", "--dry-run", spec]),
                       rounds=1, iterations=1)
    benchmark.extra_info["spec_kib"] = spec.stat().st_size // 1024


@pytest.fixture(scope="module")
def regions64k(tmp_path_factory):
    data = hostile.relocation_regions(64_000, overlap_last=True)
    path = tmp_path_factory.mktemp("r64k") / "r.igvm"
    path.write_bytes(data)
    return data, path


def test_overlap_64000_regions_python(benchmark, regions64k):
    """Target: under 1 s (the quadratic check took 6.45 s for 8,000)."""
    from harness.igvm.validate import validate
    data, _ = regions64k
    v = benchmark.pedantic(validate, args=(data,), rounds=3, iterations=1)
    assert [x.rule for x in v] == ["relocation-regions-overlap"]


def test_overlap_64000_regions_c(benchmark, regions64k, tmp_path):
    """Target: under 1 s in igvm-check (the quadratic check took 26 s)."""
    build = tmp_path / "libigvm"
    subprocess.run(["make", "-s", "-C", str(ROOT / "libigvm"),
                    f"BUILDDIR={build}", "all"], check=True, capture_output=True, timeout=300)
    _, path = regions64k
    out = benchmark.pedantic(lambda: subprocess.run([str(build / "igvm-check"), str(path)],
                                                    capture_output=True, text=True).stdout,
                             rounds=3, iterations=1)
    assert out.startswith("-20 ")
