"""The QEMU 10.2 facts the OVMF wrap and the classic-launch model rest on, checked in
the QEMU source the harness builds from (so a QEMU that changes them fails here,
not silently in a digest)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def qemu_tree(request) -> Path:
    try:  # the shared fixture (tests/conftest.py), where the branch has it
        return Path(request.getfixturevalue("qemu_source").tree)
    except pytest.FixtureLookupError:
        pass
    from harness.qemu.build import cache_root
    work = cache_root() / "qemu" / "work"
    found = sorted(work.glob("*/src/qemu-*/target/i386/sev.c"))
    if not found:
        pytest.skip(f"no QEMU source downloaded in {cache_root()} (run `igvm-harness qemu build`)")
    return found[-1].parents[2]


def _body(text: str, head: str) -> str:
    start = text.index(head)
    return text[start:text.index("\n}\n", start)]


def test_aps_get_zero_fpu_control_in_a_classic_launch(qemu_tree):
    sev = (qemu_tree / "target/i386/sev.c").read_text()
    init = _body(sev, "static void initialize_vmsa(")
    assert "memset(vmsa, 0, sizeof(struct sev_es_save_area));" in init
    assert "x87_fcw" not in init and "mxcsr" not in init
    ap = _body(sev, "static void sev_es_set_ap_context(")
    assert "initialize_vmsa(cpu, &vmsa);" in ap and "vmsa.rip = reset_addr & 0x0000ffff;" in ap
    apply = _body(sev, "static void sev_apply_cpu_context(")
    assert "cpu_set_fpuc(env, launch_vmsa->vmsa.x87_fcw);" in apply
    assert "env->mxcsr = launch_vmsa->vmsa.mxcsr;" in apply
    kvm = _body((qemu_tree / "target/i386/kvm/kvm.c").read_text(), "void kvm_arch_reset_vcpu(")
    assert "sev_es_set_reset_vector(CPU(cpu));" in kvm


def test_classic_snp_metadata_page_types(qemu_tree):
    sev = (qemu_tree / "target/i386/sev.c").read_text()
    m = _body(sev, "snp_metadata_desc_to_page_type(int desc_type)")
    for line in ("case SEV_DESC_TYPE_SNP_SEC_MEM: return KVM_SEV_SNP_PAGE_TYPE_ZERO;",
                 "case SEV_DESC_TYPE_SNP_SECRETS: return KVM_SEV_SNP_PAGE_TYPE_SECRETS;",
                 "case SEV_DESC_TYPE_CPUID: return KVM_SEV_SNP_PAGE_TYPE_CPUID;",
                 "return KVM_SEV_SNP_PAGE_TYPE_ZERO;"):
        assert line in m
    finish = _body(sev, "sev_snp_launch_finish(SevCommonState *sev_common)")
    assert finish.index("if (!X86_MACHINE(qdev_get_machine())->igvm)") < finish.index("snp_populate_metadata_pages")


def test_igvm_zero_pages_are_measured_as_normal(qemu_tree):
    sev = (qemu_tree / "target/i386/sev.c").read_text()
    cgs = _body(sev, "static int cgs_set_guest_state(")
    zero = cgs.index("case CGS_PAGE_TYPE_ZERO:")
    assert cgs.index("return klass->launch_update_data(sev_common, gpa, ptr, len, errp);", zero) \
        < cgs.index("case CGS_PAGE_TYPE_VMSA:")
    snp = _body(sev, "static int sev_snp_launch_update_data(")
    assert "KVM_SEV_SNP_PAGE_TYPE_NORMAL" in snp
    igvm = (qemu_tree / "backends/igvm.c").read_text()
    assert "return zero ? CGS_PAGE_TYPE_ZERO : CGS_PAGE_TYPE_NORMAL;" in igvm


def test_sev_es_defaults_to_the_legacy_vm_type(qemu_tree):
    sev = (qemu_tree / "target/i386/sev.c").read_text()
    assert "return false;" in _body(sev, "static bool sev_init2_required(")
    assert "sev_guest->legacy_vm_type = ON_OFF_AUTO_AUTO;" in sev
    kvm_type = _body(sev, "static int sev_kvm_type(")
    assert "sev_common->kvm_type = KVM_X86_DEFAULT_VM;" in kvm_type


def test_native_vp_contexts_only_for_the_bsp(qemu_tree):
    igvm = (qemu_tree / "target/i386/igvm.c").read_text()
    assert "context can be set for BSP only" in igvm
    sev = (qemu_tree / "target/i386/sev.c").read_text()
    assert "context for out of bounds " in _body(sev, "static int sev_set_cpu_context(")
