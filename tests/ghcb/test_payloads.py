"""Every SEV-ES / SEV-SNP matrix cell that QEMU boots on a lab host, run
in the GHCB model to the guest's report.

The cells come from the expectation data (harness/expect/data/cases.toml):
each case whose outcome on sev-es or sev-snp -- its recorded deviation where
one exists, since that is what QEMU's code does -- is "boots".  Its IGVM
file is the one the matrix builds (harness.matrix.recipes), with the C-bit
the matrix's sev-guest object gets; the model runs vCPU 0 from the VMSA the
launch measures over the memory the file's directives lay out.

Expected values come from the line protocol and the cell's recipe, not from
the model: the configuration page asks for status 0x2A (recipes.STATUS_OK),
so the guest must print ``IGVMT done status=0x2a`` and write 0x2A to
isa-debug-exit, which makes QEMU exit (0x2A << 1) | 1 = 85
(hw/misc/debugexit.c).  The GHCB line reports the C-bit of the
``-object sev-guest,cbitpos=51`` the cell runs with, and the protocol
version KVM offers: 1 for an SEV-ES VM made with the legacy KVM_SEV_ES_INIT
(QEMU 10.2's default), 2 for SEV-SNP (arch/x86/kvm/svm/sev.c sev_guest_init,
__sev_guest_init).

Not generated: cells whose file does not declare the platform the VM runs
(platform-only-native on sev-es, ...): QEMU then selects another platform's
directives inside an SEV VM, a launch harness.measure does not plan.
"""

from __future__ import annotations

import pytest

from harness.expect.table import load
from harness.expect.verdict import effective_pair
from harness.ghcb import run_igvm
from harness.ghcb.report import judge
from harness.matrix import recipes

from tests.ghcb.conftest import CBIT, REDUCED

EFER_LME, EFER_LMA, EFER_SVME = 1 << 8, 1 << 10, 1 << 12
CR4_PAE, CR4_MCE = 1 << 5, 1 << 6


def _booting_cells():
    out = []
    for case in load().cases:
        if case.recipe != "guest":
            continue
        for platform in ("sev-es", "sev-snp"):
            exp = case.expectation(platform, None)
            if exp is None:
                continue
            doc, dev = effective_pair(exp, None)
            declared = case.params.get("platforms", [platform])
            if (dev or doc).outcome == "boots" and recipes.winner(declared, platform) == platform:
                out.append(pytest.param(case, platform, id=f"{case.id}/{platform}"))
    return out


CELLS = _booting_cells()


def test_every_form_is_covered():
    """Both forms the matrix uses (VP context, reset vector) on both platforms."""
    seen = {(p.values[0].form, p.values[1]) for p in CELLS}
    assert seen == {(f, p) for f in ("vp-context", "reset-vector") for p in ("sev-es", "sev-snp")}


@pytest.mark.parametrize("case, platform", CELLS)
def test_cell_runs_to_its_report(case, platform, cell_file, record_property):
    data = cell_file(case.id, platform)
    result = run_igvm(data, platform, vcpus=case.smp, cbit=CBIT, reduced_phys_bits=REDUCED)
    record_property("ghcb_model", result.counts_line())
    print(f"{case.id}/{platform}: {result.status}; {result.counts_line()}")
    verdict = judge(result, recipes.STATUS_OK)
    assert verdict.passed, verdict.message
    assert result.exit_status == (recipes.STATUS_OK << 1) | 1
    rep = verdict.report
    ghcb = rep.one("ghcb")
    assert ghcb["cbit"] == CBIT
    assert ghcb["version"] == (2 if platform == "sev-snp" else 1)
    assert ghcb["snp"] == (1 if platform == "sev-snp" else 0)
    boot = rep.one("boot")
    assert boot["mode"] == 64 and boot["rip"] == 0x100000 and boot["io_mode"] == 1
    assert boot["cfg"] == 1 and boot["cs"] == 0x8 and boot["ds"] == boot["ss"] == 0x10
    # EFER as the encrypted guest reads it: long mode, and SVME, which KVM
    # puts into every VMSA it launches (svm/svm.c svm_set_efer).
    assert boot["efer"] == EFER_LME | EFER_LMA | EFER_SVME
    if case.form == "vp-context":
        # the file's VMSA (recipes.vmsa_for) after KVM: CR4 gains the host's
        # MCE bit (svm/svm.c svm_set_cr4); no IDT given
        assert boot["cr3"] == 0x1000 and boot["cr4"] == CR4_PAE | CR4_MCE
        assert boot["idtr_limit"] == 0
    else:
        # reset_long.s loads CR3 = 0x1000 and CR4 = PAE itself
        assert boot["cr3"] == 0x1000 and boot["cr4"] == CR4_PAE
    regs = rep.one("regs")
    assert regs["rsp"] == 0x10000
    # every VMGEXIT but the MSR-protocol set-up carries one console byte or the exit
    msr = sum(n for k, n in result.exits.items() if k.startswith("vmgexit:msr-protocol"))
    assert msr == (4 if platform == "sev-snp" else 2)       # CPUID, SEV info (+ PSC, GPA)
    assert result.total("vmgexit") - msr == len(result.console) + 1
    assert result.total("#VC") == 0
