"""Benchmarks of real-firmware boots under TCG (the figures of the README's
real-firmware section), the same firmware through an IGVM wrap and through
``-bios``:

* to OVMF's settled boot manager (harness/guests/firmware.py SETTLED), per
  installed OVMF build;
* a Linux boot (Debian's kernel + the harness initrd) to the initrd's
  ``IGVMT done`` and QEMU's exit, through the generic build.

Each round starts a fresh QEMU; ``extra_info`` holds the time from QEMU's
start to the marker (the benchmark's own time adds QEMU's exit).
Run: ``.venv/bin/python -m pytest benchmarks/test_firmware_bench.py
--benchmark-only -s``.
"""

from __future__ import annotations

import pytest

from harness.guests.firmware import LINUX_DONE, SETTLED
from harness.qemu.cmdline import QemuCommand
from harness.qemu import runner

LINUX_FIRMWARE = "ovmf-generic"
LINUX_ARGS = "console=ttyS0 efi=debug panic=-1"


def _info(name: str):
    from harness import assets
    try:
        return assets.info(name)
    except assets.AssetMissing as exc:
        pytest.skip(str(exc))


def _wrap(info, tmp_path):
    from harness.igvm import ovmf, wrap_ovmf
    p = tmp_path / f"{info.name}.igvm"
    p.write_bytes(wrap_ovmf.wrap(ovmf.load(info.path), ("native",), 1))
    return p


def _bench(benchmark, qemu, tmp_path, marker, rounds, stop=True, timeout=600.0, **cmd):
    times: list[float] = []

    def once():
        d = tmp_path / f"run-{len(times)}"
        out = runner.run(QemuCommand(qemu, accel="tcg", **cmd), d, timeout, until=marker,
                         stop=stop)
        assert out.matched is not None, out.summary()
        times.append(out.matched_at)

    benchmark.pedantic(once, rounds=rounds, iterations=1)
    benchmark.extra_info["to_marker_s"] = [round(t, 2) for t in times]
    print(f"\n  {benchmark.name}: to marker {', '.join(f'{t:.1f}' for t in times)} s")


@pytest.mark.parametrize("how", ["igvm", "bios"])
@pytest.mark.parametrize("name", ["ovmf-amdsev", "ovmf-generic", "ovmf-bookworm"])
def test_bench_boot_manager(benchmark, qemu_binary, tmp_path, name, how):
    info = _info(name)
    where = {"igvm": str(_wrap(info, tmp_path))} if how == "igvm" else {"bios": str(info.path)}
    _bench(benchmark, qemu_binary, tmp_path, SETTLED, 3, memory="256M", **where)


@pytest.mark.parametrize("how", ["igvm", "bios"])
def test_bench_linux_boot(benchmark, qemu_binary, tmp_path, how):
    from harness.guests.initrd import build_initrd
    info, kernel, busybox = _info(LINUX_FIRMWARE), _info("linux"), _info("busybox")
    initrd = build_initrd(busybox.path)
    where = {"igvm": str(_wrap(info, tmp_path))} if how == "igvm" else {"bios": str(info.path)}
    extra = ["-kernel", str(kernel.path), "-initrd", str(initrd), "-append", LINUX_ARGS]
    _bench(benchmark, qemu_binary, tmp_path, LINUX_DONE, 2, stop=False, memory="512M", smp=2,
           extra=extra, **where)
