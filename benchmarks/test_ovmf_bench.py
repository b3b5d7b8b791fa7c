"""OVMF benchmarks: wrapping a 4 MiB OVMF into IGVM, and the classic launch digest
beside sev-snp-measure on the same firmware (Debian's OVMF.amdsev.fd).

Figures (2-core VM shared with other jobs; see the README's figures table): printed
by ``test_measure_vs_sev_snp_measure`` with ``-s``.

Run: ``.venv/bin/python -m pytest benchmarks/test_ovmf_bench.py --benchmark-only -s``.
"""

from __future__ import annotations

import time

import pytest

from harness.igvm import ovmf, wrap_ovmf
from harness.igvm.parser import scan
from harness.measure.classic_ovmf import ApState, predict_classic
from harness.measure.kvm_vmsa import HostProfile, VmType
from tests.ovmf_images import debian_ovmf

ssm_guest = pytest.importorskip("sevsnpmeasure.guest", reason="sev-snp-measure (dev extra) not installed")
from sevsnpmeasure.sev_mode import SevMode  # noqa: E402
from sevsnpmeasure.vmm_types import VMMType  # noqa: E402

EPYC_V4 = 0x800F12


@pytest.fixture(scope="module")
def amdsev():
    path = debian_ovmf("ovmf-amdsev")
    fw = ovmf.load(path)
    assert fw.size == 4 << 20
    return str(path), fw


def _interleaved(a, b, rounds: int = 25) -> tuple[float, float]:
    """Best time of each, measured alternately so that load from other jobs hits both alike."""
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for i, fn in enumerate((a, b)):
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best[0], best[1]


def test_wrap_4mib_ovmf(benchmark, amdsev):
    """wrap-ovmf of the 4 MiB image for all four platforms, 4 vCPUs (file bytes out)."""
    _, fw = amdsev
    data = benchmark(wrap_ovmf.wrap, fw, tuple(wrap_ovmf.PLATFORMS), 4)
    assert scan(data)[1] == []


def test_wrap_then_parse_and_validate(benchmark, amdsev):
    _, fw = amdsev
    benchmark(lambda: scan(wrap_ovmf.wrap(fw, tuple(wrap_ovmf.PLATFORMS), 4), strict=True))


@pytest.mark.parametrize("platform,mode", [("sev-snp", SevMode.SEV_SNP), ("sev-es", SevMode.SEV_ES)])
def test_measure_vs_sev_snp_measure(benchmark, amdsev, platform, mode):
    """Same digest (classic model, the launch sev-snp-measure models), and the time ratio."""
    path, _ = amdsev
    host = HostProfile(cpu_sig=EPYC_V4, vm_type=VmType.INIT2)
    feats = 1 if mode == SevMode.SEV_SNP else 0

    def ours():  # from the file, as `igvm-harness measure FW.fd` does
        return predict_classic(ovmf.load(path), platform, 4, host, ApState.QEMU_9).digest

    def theirs():
        return ssm_guest.calc_launch_digest(mode, 4, EPYC_V4, path, "", "", "", feats, vmm_type=VMMType.QEMU)

    assert ours() == theirs()
    benchmark(ours)
    t_ours, t_theirs = _interleaved(ours, theirs)
    print(f"\n{platform} 4 vCPUs, 4 MiB OVMF: igvm-harness {t_ours * 1e3:.1f} ms, "
          f"sev-snp-measure {t_theirs * 1e3:.1f} ms, ratio {t_ours / t_theirs:.2f}")
