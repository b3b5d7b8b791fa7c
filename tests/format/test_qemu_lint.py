"""QEMU lint: each finding is derived from the QEMU 10.2 source it cites
(backends/igvm.c, target/i386/sev.c, target/i386/igvm.c,
docs/system/igvm.rst); the citations themselves are checked against the
QEMU source tree when it is available."""

import os
import re
from pathlib import Path

import pytest

from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import KVM_VMSA_GPA, HeaderType, PageDataType, PlatformType
from harness.igvm.qemu_lint import lint, platform_type
from harness.igvm.vmsa import NativeVpContextX64, Segment, SevEsVmsa
from harness.igvm.validate import validate


def good_vmsa(snp=True):
    return SevEsVmsa(rip=0xFFF0, cs=Segment(0xF000, 0x9B, 0xFFFF, 0xFFFF0000), cr0=0x10,
                     efer=0x1000, xcr0=1, g_pat=0x0007040600070406, mxcsr=0x1F80,
                     x87_fcw=0x37F, sev_features=1 if snp else 0)


def snp_file(vmsa=None, gpa=KVM_VMSA_GPA, extra=None):
    b = IgvmBuilder()
    snp = b.platform(PlatformType.SEV_SNP)
    b.page(0xFFFFF000, b"\xF4")
    b.vp_context(gpa, vmsa if vmsa is not None else good_vmsa(), mask=snp)
    if extra:
        extra(b, snp)
    return b.build()


def rules(findings):
    return sorted(f.rule for f in findings)


def test_clean_snp_file_has_no_findings():
    data = snp_file()
    assert validate(data) == []
    assert lint(data) == []
    assert lint(data, platform="sev-snp") == []


def test_vmsa_gpa_must_be_kvm_fixed_gpa():
    # sev.c check_vmsa_supported: gpa != KVM_VMSA_GPA (0xFFFFFFFFF000) is an error
    data = snp_file(gpa=0x1000)
    assert validate(data) == []
    assert rules(lint(data)) == ["qemu-vmsa-gpa"]


def test_vmsa_field_outside_allow_list():
    v = good_vmsa()
    v.dr0 = 0x1234          # not cleared by check_vmsa_supported
    v.star = 1
    [f] = lint(snp_file(v))
    assert f.rule == "qemu-vmsa-fields" and "dr0" in f.message and "star" in f.message


def test_snp_vmsa_needs_snp_active():
    assert rules(lint(snp_file(good_vmsa(snp=False)))) == ["qemu-vmsa-sev-features"]


def test_sev_es_vmsa_must_not_set_snp_active():
    b = IgvmBuilder()
    es = b.platform(PlatformType.SEV_ES)
    b.vp_context(KVM_VMSA_GPA, good_vmsa(snp=True), mask=es)
    assert rules(lint(b.build())) == ["qemu-vmsa-sev-features"]


@pytest.mark.parametrize("add", [
    lambda b, m: b.error_range(0x2000, 0x1000, mask=m),
    lambda b, m: b.parameter(HeaderType.COMMAND_LINE, b.parameter_area(0x1000), 0),
    lambda b, m: b.parameter(HeaderType.SRAT, b.parameter_area(0x1000), 0),
])
def test_headers_qemu_does_not_handle(add):
    data = snp_file(extra=add)
    assert validate(data) == []
    assert "qemu-unhandled-header" in rules(lint(data))


def test_no_directives():
    b = IgvmBuilder()
    b.platform(PlatformType.NATIVE)
    assert rules(lint(b.build())) == ["qemu-no-directives"]


def test_no_usable_platform():
    b = IgvmBuilder()
    b.platform(PlatformType.TDX)
    b.page(0)
    assert rules(lint(b.build())) == ["qemu-no-usable-platform"]


def test_secrets_page_needs_snp():
    b = IgvmBuilder()
    snp = b.platform(PlatformType.SEV_SNP)
    es = b.platform(PlatformType.SEV_ES)
    b.page(0x1000, data_type=PageDataType.SECRETS, mask=snp | es)
    found = lint(b.build())
    assert [(f.rule, f.platform) for f in found] == [("qemu-page-type-needs-snp", "sev-es")]


def test_requested_platform_absent_or_unsupported():
    data = snp_file()
    assert rules(lint(data, platform="sev")) == ["qemu-platform-absent"]
    assert rules(lint(data, platform=PlatformType.TDX)) == ["qemu-platform-unsupported"]


def test_native_vp_context_bsp_only():
    b = IgvmBuilder(revision=2)
    n = b.platform(PlatformType.NATIVE)
    b.vp_context(0, NativeVpContextX64(rip=0x1000), mask=n, vp_index=1)
    assert rules(lint(b.build())) == ["qemu-vp-context-ap"]


def test_sev_cannot_take_vp_context():
    b = IgvmBuilder()
    s = b.platform(PlatformType.SEV)
    b.vp_context(0, NativeVpContextX64(rip=0x1000), mask=s)
    assert rules(lint(b.build())) == ["qemu-vp-context-unsupported"]


def test_parameter_written_outside_area():
    def extra(b, m):
        i = b.parameter_area(0x1000)
        b.vp_count(i, 0xFFE)
        b.parameter_insert(0x3000, i)
    assert rules(lint(snp_file(extra=extra))) == ["qemu-parameter-outside-area"]


def test_multiple_id_blocks_and_policy_notes():
    def extra(b, m):
        b.snp_id_block(mask=m)
        b.snp_id_block(mask=m)
    assert rules(lint(snp_file(extra=extra))) == ["qemu-multiple-id-blocks"]
    b = IgvmBuilder()
    es = b.platform(PlatformType.SEV_ES)
    b.guest_policy(0x5, mask=es)
    b.page(0)
    [f] = lint(b.build())
    assert f.rule == "qemu-guest-policy-ignored" and f.severity == "warning"


def test_platform_names():
    assert platform_type("sev-snp") is PlatformType.SEV_SNP
    assert platform_type("SEV_ES") is PlatformType.SEV_ES
    assert platform_type("auto") is None
    with pytest.raises(ValueError):
        platform_type("z80")


def _all_findings():
    out = []
    for data in [snp_file(gpa=0), snp_file(good_vmsa(False)), snp_file(SevEsVmsa(dr1=1,
                 sev_features=1))]:
        out += lint(data)
    b = IgvmBuilder()
    b.platform(PlatformType.TDX)
    b.error_range(0, 0x1000)
    out += lint(b.build())
    return out


def test_citations_exist_in_qemu_source(qemu_source):
    findings = _all_findings()
    assert findings
    for f in findings:
        for part in f.source.split("; "):
            path, _, what = part.partition(": ")
            text = (qemu_source.tree / path).read_text()
            name = re.split(r"[ (]", what)[0]
            assert name in text, (path, name)
