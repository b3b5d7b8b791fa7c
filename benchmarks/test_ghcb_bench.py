"""GHCB model benchmark: one SEV-SNP VP-context cell of the matrix, from the
IGVM bytes to the guest's report (parse, launch plan, measured VMSA,
unicorn set-up, ~33,000 guest instructions, ~410 VMGEXITs).

Goal (issue 20): the model must not add more than ~20 s to the test
command on 2 cores; tests/ghcb runs about 40 such runs, so one run should
stay well under 0.3 s of CPU.  Figures (2-core VM shared with other jobs,
2026-12-06): 0.14 s of CPU per run (process_time, load ~6.7); this
benchmark's wall time min 0.22 s, mean 0.29 s at load ~5.1 (re-take on an
idle machine).

Run: ``.venv/bin/python -m pytest benchmarks/test_ghcb_bench.py --benchmark-only -s``.
"""

from __future__ import annotations

import pytest

pytest.importorskip("unicorn", reason="unicorn is not installed (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def snp_cell(tmp_path_factory):
    from harness.matrix import recipes
    from harness.matrix.guests import guest_images
    ctx = recipes.Context("vp-context", "vp-context", "sev-snp", {},
                          tmp_path_factory.mktemp("cell"), guest_images())
    return recipes.build("guest", ctx).igvm_path.read_bytes()


def test_snp_cell_to_report(benchmark, snp_cell):
    from harness.ghcb import run_igvm
    result = benchmark.pedantic(run_igvm, args=(snp_cell, "sev-snp"), rounds=5, iterations=1)
    assert result.status == "exited" and result.guest_status == 0x2A
