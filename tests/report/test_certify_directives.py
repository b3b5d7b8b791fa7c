"""The directive check asks the matrix's expectation data and verdict engine.

The file under test is shaped like an OVMF wrap for SEV-SNP (firmware pages
ending at 4 GiB, zero pages for SNP_SEC_MEM, a SECRETS and a CPUID page as
their IGVM page types, a BSP VMSA at KVM's GPA).  QEMU 10.2 loads SECRETS
and CPUID pages on SNP (target/i386/sev.c: cgs_set_guest_state passes
CGS_PAGE_TYPE_SECRETS / CGS_PAGE_TYPE_CPUID on to SNP_LAUNCH_UPDATE,
snp_launch_update_cpuid; backends/igvm.c: qigvm_type_to_cgs_type) although
docs/system/igvm.rst lists only NORMAL pages; cases.toml records that as a
deviation, and the certification must follow it.
"""

from __future__ import annotations

import dataclasses

from harness.certify import profile
from harness.expect import table as expect_table
from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import KVM_VMSA_GPA, PageDataType, PlatformType
from harness.measure.kvm_vmsa import HostProfile, reset_vmsa

FIRMWARE_SIZE = 64 * 1024
SEC_MEM, SECRETS, CPUID = 0x800000, 0x809000, 0x80A000


def ovmf_shaped_snp(path):
    b = IgvmBuilder()
    mask = b.platform(PlatformType.SEV_SNP)
    fw = bytearray(FIRMWARE_SIZE)
    fw[-16:-13] = bytes.fromhex("E90DFF")
    b.pages(0x1_0000_0000 - FIRMWARE_SIZE, bytes(fw), mask=mask)
    b.zero_pages(SEC_MEM, 9, mask=mask)
    b.page(SECRETS, None, mask=mask, data_type=PageDataType.SECRETS)
    b.page(CPUID, None, mask=mask, data_type=PageDataType.CPUID_DATA)
    b.vp_context(KVM_VMSA_GPA, reset_vmsa(HostProfile(), 0x1, snp=True), mask=mask)
    b.write(path)
    return path


def _directives(path, platform="sev-snp"):
    target = profile.prepare(path, platform, boot=False)
    step = next(p for p in profile.plan(target) if p.id == f"{platform}.directives")
    check, cells = profile.run_check(target, step)
    return check, {c.directive: c for c in cells}


def test_snp_secrets_and_cpuid_pages_pass_by_the_recorded_deviation(tmp_path):
    check, cells = _directives(ovmf_shaped_snp(tmp_path / "snp.igvm"))
    assert check.verdict == "pass", check.message
    for construct in ("PAGE_DATA(SECRETS)", "PAGE_DATA(CPUID_DATA)"):
        # the matrix's word for "QEMU does what the recorded deviation says"
        assert cells[construct].verdict == "xfail"
        assert construct in check.message  # named as accepted against the docs
    assert cells["PAGE_DATA"].verdict == "pass"
    assert cells["VP_CONTEXT"].verdict == "pass"
    rows = {r["construct"]: r for r in check.evidence.details["directives"]}
    assert rows["PAGE_DATA(SECRETS)"]["case"] == "page-secrets"
    assert "target/i386/sev.c: cgs_set_guest_state" in rows["PAGE_DATA(SECRETS)"]["reference"]


def test_the_check_follows_the_data_not_knowledge_of_its_own(tmp_path, monkeypatch):
    """Remove the SNP deviation of page-secrets from the data: the same file
    now fails on SECRETS alone -- the verdict came from the data."""
    real = expect_table.load()
    cases = []
    for case in real.cases:
        if case.id == "page-secrets":
            snp = tuple(dataclasses.replace(e, deviation=None) for e in case.expect["sev-snp"])
            case = dataclasses.replace(case, expect={**case.expect, "sev-snp": snp})
        cases.append(case)
    monkeypatch.setattr(expect_table, "load",
                        lambda: dataclasses.replace(real, cases=cases))
    check, cells = _directives(ovmf_shaped_snp(tmp_path / "snp.igvm"))
    assert check.verdict == "fail"
    assert check.message.endswith("refuses on sev-snp: PAGE_DATA(SECRETS)")
    assert cells["PAGE_DATA(SECRETS)"].verdict == "fail"
    assert cells["PAGE_DATA(CPUID_DATA)"].verdict == "xfail"


def test_the_same_pages_on_sev_es_are_refused(tmp_path):
    # "attempt to configure secrets page, but SEV-SNP is not supported"
    # (target/i386/sev.c: cgs_set_guest_state), no deviation recorded.
    b = IgvmBuilder()
    mask = b.platform(PlatformType.SEV_ES)
    b.page(0xFFFFF000, bytes(4096), mask=mask)
    b.page(SECRETS, None, mask=mask, data_type=PageDataType.SECRETS)
    b.page(CPUID, None, mask=mask, data_type=PageDataType.CPUID_DATA)
    path = tmp_path / "es.igvm"
    b.write(path)
    check, cells = _directives(path, "sev-es")
    assert check.verdict == "fail"
    assert "PAGE_DATA(SECRETS), PAGE_DATA(CPUID_DATA)" in check.message
    assert cells["PAGE_DATA(SECRETS)"].verdict == "fail"
