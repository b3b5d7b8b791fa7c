"""The KVM VMSA model against sev-snp-measure, sevctl vectors and the cited sources.

Expected values are written from the sources the model cites (QEMU
target/i386/sev.c, Linux arch/x86/kvm/svm/{svm,sev}.c), from sevctl's
recorded VMSA pages, and from sev-snp-measure's VMSA builder -- never from
this code's output.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.measure import kvm_vmsa as kv
from harness.measure.kvm_vmsa import HostProfile, Segment, VmType
from tests.measure.conftest import b64, load_vector

ssm_vmsa = pytest.importorskip("sevsnpmeasure.vmsa", reason="sev-snp-measure (PyPI) not installed")
from sevsnpmeasure.vmm_types import VMMType  # noqa: E402
from sevsnpmeasure import vcpu_types  # noqa: E402

INIT2 = HostProfile(vm_type=VmType.INIT2)


def test_layout_offsets_match_sev_snp_measure():
    area = ssm_vmsa.SevEsSaveArea
    assert kv.SEGMENT_OFFSET == {n: getattr(area, n).offset for n in kv.SEGMENTS}
    checked = 0
    for name, (off, _fmt) in kv.FIELDS.items():
        if hasattr(area, name):
            assert getattr(area, name).offset == off, name
            checked += 1
    assert checked >= 50
    assert ctypes_size(area) == 0x1000


def ctypes_size(t) -> int:
    import ctypes
    return ctypes.sizeof(t)


@pytest.mark.parametrize("model", ["EPYC", "EPYC-v4", "EPYC-Rome", "EPYC-Milan", "EPYC-Genoa"])
def test_cpu_signatures_match_sev_snp_measure(model):
    expected = vcpu_types.CPU_SIGS.get(model)
    if expected is None:
        pytest.skip(f"sev-snp-measure has no signature for {model}")
    assert kv.cpu_signature(*kv.QEMU_CPU_MODELS[model]) == expected


@pytest.mark.parametrize("features", [0x1, 0x21, 0x0])
@pytest.mark.parametrize("sig", [0x800F12, 0xA00F11, 0x830F10])
def test_reset_vmsa_init2_matches_sev_snp_measure(features, sig):
    """A vCPU without VP context on an INIT2/SNP VM == sev-snp-measure's QEMU reset VMSA."""
    host = HostProfile(vm_type=VmType.INIT2, cpu_sig=sig)
    ref = bytes(ssm_vmsa.VMSA.build_save_area(0xFFFFFFF0, features, sig, VMMType.QEMU))
    assert kv.reset_vmsa(host, features) == ref


def test_reset_vmsa_legacy_matches_sevctl_vmsa0():
    v = load_vector("sevctl_vmsa_build_kat.json")
    host = HostProfile(vm_type=VmType.LEGACY, cpu_sig=int(v["expected_rdx_vcpu_sig"], 16))
    expected = b64(v["cases"][0]["expected_vmsa_b64"])
    assert kv.diff_vmsa(expected, kv.reset_vmsa(host, 0)) == []


def test_ovmf_ap_context_legacy_matches_sevctl_vmsa1():
    """QEMU's AP context for the OVMF SEV-ES reset vector (sev_es_set_ap_context: reset
    state, CS.base = addr & 0xffff0000, RIP = addr & 0xffff) through
    sev_apply_cpu_context and KVM == sevctl's vmsa1.bin."""
    v = load_vector("sevctl_vmsa_build_kat.json")
    sig = int(v["expected_rdx_vcpu_sig"], 16)
    addr = int(v["args"]["ovmf_sev_es_reset_eip"], 16)
    reset = kv.qemu_reset_state(sig)
    segs = dict(reset.segs)
    segs["cs"] = Segment(0xF000, 0x9B, 0xFFFF, addr & 0xFFFF0000)
    regs = {k: reset.regs[k] for k in kv.QEMU_SUPPORTED_FIELDS if k not in ("x87_fcw", "mxcsr")}
    regs["rip"] = addr & 0xFFFF
    ctx = kv.write_vmsa(segs, regs)  # initialize_vmsa() does not copy x87_fcw/mxcsr
    got = kv.context_vmsa(ctx, HostProfile(vm_type=VmType.LEGACY, cpu_sig=sig), 0)
    assert kv.diff_vmsa(b64(v["cases"][1]["expected_vmsa_b64"]), got) == []


def test_legacy_and_init2_differ_only_in_fpu_fields():
    """sev_es_sync_vmsa syncs x87/SSE state only when vm_type != KVM_X86_DEFAULT_VM."""
    legacy = kv.reset_vmsa(HostProfile(vm_type=VmType.LEGACY), 0)
    init2 = kv.reset_vmsa(INIT2, 0)
    assert sorted(n for n, _a, _b in kv.diff_vmsa(legacy, init2)) == ["mxcsr", "x87_fcw"]
    _s, r = kv.read_fields(init2)
    assert (r["x87_fcw"], r["mxcsr"]) == (0x37F, 0x1F80)  # x86_cpu_reset values


def _long_mode_context(**over) -> bytes:
    """A typical 64-bit IGVM VP context (SVSM-like), as a file would carry it."""
    code = Segment(0x8, 0xA09B, 0xFFFFFFFF, 0)  # bits 12-15 set on purpose
    data = Segment(0x10, 0xC093, 0xFFFFFFFF, 0)
    segs = {n: data for n in ("es", "ss", "ds", "fs", "gs")}
    segs.update(cs=code, gdtr=Segment(0, 0x82, 0x17, 0x1000), idtr=Segment(0, 0, 0xFFF, 0x2000),
                ldtr=Segment(0, 0x82, 0xFFFF, 0x5000), tr=Segment(0x18, 0x8B, 0x67, 0x6000))
    regs = dict(efer=0xD00, cr0=0x80000001 | (1 << 30) | (1 << 29) | (0xAB << 32), cr3=0x3000,
                cr4=0x20 | 0x200, xcr0=1, rflags=0, rip=0x1234567, rsp=0x8000, rdx=0, rax=7,
                r15=0xF15, g_pat=0x0007040600070406, dr6=0xFFFF0FF0, dr7=0x400,
                x87_fcw=0x40, mxcsr=0x1F80, sev_features=0)
    regs.update(over)
    return kv.write_vmsa(segs, regs)


def test_kvm_adjustments_on_igvm_context():
    out = kv.context_vmsa(_long_mode_context(), INIT2, 0)
    segs, r = kv.read_fields(out)
    assert r["efer"] == 0xD00 | 0x1000                 # svm_set_efer: | EFER_SVME
    assert r["cr0"] == 0x80000001 | 0x10               # uint32 + ET (QEMU); CD/NW cleared (KVM quirk)
    assert r["cr4"] == 0x220 | 0x40                    # svm_set_cr4: | host CR4.MCE
    assert r["rflags"] == 0x2                          # __set_regs: | X86_EFLAGS_FIXED
    assert segs["cs"].attrib == 0x09B                  # 12-bit attributes
    assert segs["ds"].attrib == 0x093
    assert segs["gdtr"] == Segment(0, 0, 0x17, 0x1000)  # svm_set_gdt: base and limit only
    assert segs["idtr"] == Segment(0, 0, 0xFFF, 0x2000)
    assert (r["rip"], r["rsp"], r["rax"], r["r15"]) == (0x1234567, 0x8000, 7, 0xF15)
    assert (r["x87_fcw"], r["mxcsr"]) == (0x40, 0x1F80)  # INIT2 syncs FPU from QEMU's state
    legacy = kv.context_vmsa(_long_mode_context(), HostProfile(vm_type=VmType.LEGACY), 0)
    _s, rl = kv.read_fields(legacy)
    assert (rl["x87_fcw"], rl["mxcsr"]) == (0, 0)
    no_mce = kv.context_vmsa(_long_mode_context(), HostProfile(vm_type=VmType.INIT2, host_cr4_mce=False), 0)
    assert kv.read_fields(no_mce)[1]["cr4"] == 0x220


def test_trap_tr_base_comes_from_ldtr_base():
    """QEMU 10.2 sev_apply_cpu_context loads TR with ``launch_vmsa->vmsa.ldtr.base``.

    Confirmed in target/i386/sev.c (cpu_x86_load_seg_cache(env, R_TR,
    vmsa.tr.selector, vmsa.ldtr.base, ...)): the measured TR.base is the
    file's LDTR.base, not its TR.base."""
    segs, _r = kv.read_fields(kv.context_vmsa(_long_mode_context(), INIT2, 0))
    assert segs["tr"].base == 0x5000
    assert segs["tr"].selector == 0x18 and segs["tr"].limit == 0x67
    assert segs["ldtr"].base == 0x5000


def test_cpl_follows_ss_dpl():
    ctx = _long_mode_context()
    segs, regs = kv.read_fields(ctx)
    segs["ss"] = Segment(0x2B, 0xF3, 0xFFFFFFFF, 0)  # DPL 3
    out = kv.context_vmsa(kv.write_vmsa(segs, {k: regs[k] for k in kv.QEMU_SUPPORTED_FIELDS}), INIT2, 0)
    assert kv.read_fields(out)[1]["cpl"] == 3


def test_sev_features_by_kernel_profile_and_vm_type():
    """Legacy VM: the kernel decides (DebugSwap on by default in 6.6-6.7); INIT2/SNP: vCPU 0's VMSA."""
    assert kv.vm_sev_features(HostProfile(kernel="linux-6.6"), False, None) == 0x20
    assert kv.vm_sev_features(HostProfile(kernel="linux-6.8"), False, 0x20) == 0
    assert kv.vm_sev_features(HostProfile(kernel="linux-6.10"), False, None) == 0
    assert kv.vm_sev_features(INIT2, False, 0x20) == 0x20
    assert kv.vm_sev_features(INIT2, True, None) == 0x1
    assert kv.vm_sev_features(INIT2, True, 0x21) == 0x21
    with pytest.raises(HarnessError, match="KVM_SEV_INIT2"):
        HostProfile(kernel="linux-6.8", vm_type=VmType.INIT2).check()


def test_default_vm_type_is_legacy():
    """QEMU 10.2.x: legacy-vm-type unset behaves as on (see test_qemu_source_legacy_vm_type)."""
    assert HostProfile().vm_type is VmType.LEGACY


@pytest.mark.parametrize("over,match", [(dict(dr7=0x401), "DR7"), (dict(xcr0=0), "XCR0")])
def test_kvm_refusals(over, match):
    with pytest.raises(HarnessError, match=match):
        kv.context_vmsa(_long_mode_context(**over), INIT2, 0)


def test_unsupported_fields_named():
    page = bytearray(_long_mode_context())
    page[0x200] = 1  # STAR: not synchronised by QEMU
    assert kv.unsupported_fields(bytes(page)) == ["star"]
    assert kv.unsupported_fields(_long_mode_context()) == []


# --------------------------------------------------------- QEMU source facts
def test_qemu_source_legacy_vm_type_contradicts_its_documentation(qemu_source):
    """qapi/qom.json documents legacy-vm-type '(default: off)', but sev.c
    initialises it to AUTO and AUTO selects KVM_X86_DEFAULT_VM because
    sev_init2_required() returns false: unset behaves as on."""
    src = qemu_source.tree
    qom = (src / "qapi/qom.json").read_text()
    doc = qom[qom.index("# @legacy-vm-type:"):]
    doc = doc[:doc.index("(since")]
    assert "(default: off)" in doc
    sev = (src / "target/i386/sev.c").read_text()
    init = sev[sev.index("sev_guest_instance_init(Object *obj)"):]
    assert "legacy_vm_type = ON_OFF_AUTO_AUTO" in init[:init.index("\n}\n")]
    req = sev[sev.index("static bool sev_init2_required"):]
    assert re.search(r"\{\s*/\*[^*]*\*/\s*return false;\s*\}", req[:req.index("\n}\n") + 3])
    kt = sev[sev.index("static int sev_kvm_type"):]
    assert "ON_OFF_AUTO_AUTO &&\n         !sev_init2_required(sev_guest))" in kt


def test_qemu_source_tr_base_from_ldtr(qemu_source):
    sev = (qemu_source.tree / "target/i386/sev.c").read_text()
    assert re.search(r"R_TR, launch_vmsa->vmsa\.tr\.selector,\s*launch_vmsa->vmsa\.ldtr\.base", sev)


def test_layout_agrees_with_format_layer_vmsa():
    """The two VMSA tables in the repository (format layer, this model) agree."""
    from harness.igvm.vmsa import SevEsVmsa
    names = {n for n, _o, _f in SevEsVmsa.FIELDS}
    for name, (off, _fmt) in kv.FIELDS.items():
        if name in names:
            assert SevEsVmsa.offset_of(name) == off, name
    for name, off in kv.SEGMENT_OFFSET.items():
        assert SevEsVmsa.offset_of(name) == off
    assert kv.QEMU_SUPPORTED_FIELDS | set(kv.SEGMENTS) == set(SevEsVmsa.QEMU_ALLOWED)
    assert kv.QEMU_SAVE_AREA_SIZE == SevEsVmsa.QEMU_CHECKED_SIZE


def test_bytes_beyond_qemu_save_area_are_ignored():
    """QEMU copies sizeof(struct sev_es_save_area) = 0x670 bytes (target/i386/sev.h);
    a non-zero byte after that is neither refused nor measured."""
    page = bytearray(_long_mode_context())
    page[0x800] = 0xAA
    assert kv.unsupported_fields(bytes(page)) == []
    assert kv.context_vmsa(bytes(page), INIT2, 0) == kv.context_vmsa(_long_mode_context(), INIT2, 0)


def test_unsupported_vmsa_features_refused_when_host_mask_known():
    """check_sev_features: features beyond KVM_X86_SEV_VMSA_FEATURES are refused."""
    host = HostProfile(vm_type=VmType.INIT2, supported_vmsa_features=0x0)
    with pytest.raises(HarnessError, match="KVM_X86_SEV_VMSA_FEATURES"):
        kv.vm_sev_features(host, False, 0x20)
    assert kv.vm_sev_features(HostProfile(vm_type=VmType.INIT2, supported_vmsa_features=0x20), False, 0x20) == 0x20
    # SNP_ACTIVE is KVM's own bit: not checked against the mask
    assert kv.vm_sev_features(HostProfile(supported_vmsa_features=0x0), True, 0x1) == 0x1
