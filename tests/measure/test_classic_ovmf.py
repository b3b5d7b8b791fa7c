"""The classic -bios OVMF launch (harness/measure/classic_ovmf.py) and its IGVM wrap,
against sev-snp-measure (PyPI) on Debian's OVMF.amdsev.fd and on a synthetic image.

Oracles:
- sev-snp-measure's own digest (``calc_launch_digest``, VMM type QEMU) where it models
  the same launch: SNP for every vCPU count with the APs' pre-10.0 reset state
  (``--ap-state qemu-9``), SEV-ES with an INIT2 VM type (FPU fields synced).
- sev-snp-measure's primitives (GCTX, VMSA, OVMF) re-assembled here where QEMU 10.2
  differs from what it models, each patch derived from a cited QEMU fact:
  * APs: target/i386/sev.c sev_es_set_ap_context -> initialize_vmsa leaves x87 FCW and
    MXCSR zero, and sev_apply_cpu_context loads them (QEMU 10.0+);
  * SEV-ES legacy VM (QEMU 10.2's default, sev_kvm_type): KVM syncs no FPU state;
  * IGVM wrap: a page without data is measured as NORMAL zeros (cgs_set_guest_state
    CGS_PAGE_TYPE_ZERO -> launch_update_data); a parameter insert is UNMEASURED
    (backends/igvm.c qigvm_directive_parameter_insert).
"""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys

import pytest

from harness.igvm import ovmf, wrap_ovmf
from harness.igvm.parser import parse
from harness.measure.classic_ovmf import ApState, predict_classic
from harness.measure.kvm_vmsa import QEMU_CPU_MODELS, HostProfile, VmType, cpu_signature
from harness.measure.launch import predict
from tests.ovmf_images import debian_ovmf, synthetic_ovmf

ssm_guest = pytest.importorskip("sevsnpmeasure.guest", reason="sev-snp-measure (dev extra) not installed")
from sevsnpmeasure.gctx import GCTX  # noqa: E402
from sevsnpmeasure.ovmf import OVMF, SectionType  # noqa: E402
from sevsnpmeasure.sev_mode import SevMode  # noqa: E402
from sevsnpmeasure.vcpu_types import CPU_SIGS  # noqa: E402
from sevsnpmeasure.vmm_types import VMMType  # noqa: E402
from sevsnpmeasure.vmsa import VMSA  # noqa: E402

VCPU_TYPES = ["EPYC", "EPYC-v4", "EPYC-Rome", "EPYC-Milan", "EPYC-Genoa"]
MODES = {"sev-snp": SevMode.SEV_SNP, "sev-es": SevMode.SEV_ES}
IGVM_META_GUID = "784fa70e-3176-4677-8a20-04b68699e374"


@pytest.fixture(scope="module")
def amdsev():
    return str(debian_ovmf("ovmf-amdsev"))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    p = tmp_path_factory.mktemp("ovmf") / "synthetic.fd"
    p.write_bytes(synthetic_ovmf())
    return str(p)


def _host(vcpu_type: str, vm_type=VmType.LEGACY) -> HostProfile:
    return HostProfile(cpu_sig=cpu_signature(*QEMU_CPU_MODELS[vcpu_type]), vm_type=vm_type)


def _theirs(mode: SevMode, vcpus: int, vcpu_type: str, path: str) -> bytes:
    features = 1 if mode == SevMode.SEV_SNP else 0
    return ssm_guest.calc_launch_digest(mode, vcpus, CPU_SIGS[vcpu_type], path, "", "", "", features,
                                        vmm_type=VMMType.QEMU)


def _vmsa_pages(mode, path, vcpus, vcpu_type, *, ap_fpu_zero=False, all_fpu_zero=False):
    """sev-snp-measure's VMSA pages, with the FPU control fields patched as stated."""
    o = OVMF(path)
    v = VMSA(mode, o.sev_es_reset_eip(), CPU_SIGS[vcpu_type], 1 if mode == SevMode.SEV_SNP else 0,
             VMMType.QEMU)
    for area, patch in ((v.bsp_save_area, all_fpu_zero), (getattr(v, "ap_save_area", None),
                                                          ap_fpu_zero or all_fpu_zero)):
        if area is not None and patch:
            area.x87_fcw = 0
            area.mxcsr = 0
    return list(v.pages(vcpus))


def _param_area(o: OVMF):
    """(gpa, size) of the IGVM parameter area, read from the raw footer entry (IgvmMetadata.nasm.inc)."""
    try:
        (back,) = struct.unpack_from("<I", o.table_item(IGVM_META_GUID))
    except KeyError:
        return None
    data = o.data()
    at = len(data) - back
    sig, _, _, count = struct.unpack_from("<4sIII", data, at)
    assert sig == b"IGVM"
    for i in range(count):
        start, size, ident = struct.unpack_from("<III", data, at + 16 + 12 * i)
        if ident == 0x100:
            return start, size
    return None


def _snp_chain(path: str, vcpus: int, vcpu_type: str, *, igvm_mode: str | None, ap_fpu_zero: bool) -> bytes:
    """An SNP launch digest from sev-snp-measure's GCTX; ``igvm_mode`` patches the page types the way
    QEMU's IGVM path measures a wrap (None: the classic launch)."""
    o = OVMF(path)
    g = GCTX()
    g.update_normal_pages(o.gpa(), o.data())
    area = _param_area(o) if igvm_mode else None
    area_pages = set() if area is None else set(range(area[0], area[0] + area[1], 0x1000))
    for d in o.metadata_items():
        t = d.section_type()
        if t == SectionType.SNP_SECRETS:
            g.update_secrets_page(d.gpa)
        elif t == SectionType.CPUID:
            g.update_cpuid_page(d.gpa)
        elif igvm_mode is None:
            g.update_zero_pages(d.gpa, d.size)
        else:
            for gpa in range(d.gpa, d.gpa + d.size, 0x1000):
                if gpa in area_pages or igvm_mode == "unmeasured":
                    g.update_unmeasured_pages(gpa, 0x1000)
                else:
                    g.update_normal_pages(gpa, bytes(0x1000))
    for page in _vmsa_pages(SevMode.SEV_SNP, path, vcpus, vcpu_type, ap_fpu_zero=ap_fpu_zero):
        g.update_vmsa_page(page)
    return g.ld()


# -------------------------------------------------------------- classic = sev-snp-measure
@pytest.mark.parametrize("vcpu_type", VCPU_TYPES)
@pytest.mark.parametrize("vcpus", [1, 2, 4])
@pytest.mark.parametrize("platform", ["sev-snp", "sev-es"])
def test_classic_equals_sev_snp_measure(amdsev, platform, vcpus, vcpu_type):
    """The launch sev-snp-measure models: APs with the reset FPU state; SEV-ES on an INIT2 VM."""
    fw = ovmf.load(amdsev)
    host = _host(vcpu_type, VmType.INIT2)
    ours = predict_classic(fw, platform, vcpus, host, ApState.QEMU_9)
    assert ours.digest == _theirs(MODES[platform], vcpus, vcpu_type, amdsev)
    if vcpus == 1:  # no AP: QEMU 10.2's own model gives the same
        assert predict_classic(fw, platform, 1, host).digest == ours.digest


def test_classic_synthetic_equals_sev_snp_measure(synthetic):
    """The same on an image assembled from edk2's layouts (runs without Debian's firmware)."""
    fw = ovmf.read(open(synthetic, "rb").read(), synthetic)
    for vcpus in (1, 3):
        ours = predict_classic(fw, "sev-snp", vcpus, _host("EPYC-Milan"), ApState.QEMU_9)
        assert ours.digest == _theirs(SevMode.SEV_SNP, vcpus, "EPYC-Milan", synthetic)
    assert predict_classic(fw, "sev", 2).digest == hashlib.sha256(synthetic_ovmf()).digest()


@pytest.mark.parametrize("vcpu_type", ["EPYC-v4", "EPYC-Genoa"])
@pytest.mark.parametrize("vcpus", [2, 4])
def test_qemu10_aps_start_with_zero_fpu_control(amdsev, vcpus, vcpu_type):
    fw = ovmf.load(amdsev)
    ours = predict_classic(fw, "sev-snp", vcpus, _host(vcpu_type))
    assert ours.digest == _snp_chain(amdsev, vcpus, vcpu_type, igvm_mode=None, ap_fpu_zero=True)
    assert ours.digest != _theirs(SevMode.SEV_SNP, vcpus, vcpu_type, amdsev)


@pytest.mark.parametrize("vcpus", [1, 2, 4])
def test_sev_es_legacy_vm_type_has_no_fpu_fields(amdsev, vcpus):
    """QEMU 10.2's default SEV-ES VM type is KVM_X86_DEFAULT_VM: sev_es_sync_vmsa copies no FPU state."""
    fw = ovmf.load(amdsev)
    want = hashlib.sha256(OVMF(amdsev).data())
    for page in _vmsa_pages(SevMode.SEV_ES, amdsev, vcpus, "EPYC-v4", all_fpu_zero=True):
        want.update(page)
    assert predict_classic(fw, "sev-es", vcpus, _host("EPYC-v4")).digest == want.digest()


# -------------------------------------------------------------- the IGVM wrap
@pytest.mark.parametrize("mode", ["zero", "unmeasured"])
@pytest.mark.parametrize("vcpus", [1, 2])
def test_igvm_wrap_digest_is_classic_with_igvm_page_types(amdsev, vcpus, mode):
    fw = ovmf.load(amdsev)
    f = parse(wrap_ovmf.wrap(fw, ("sev-snp",), vcpus, metadata_pages=mode))
    got = predict(f, "sev-snp", vcpus, _host("EPYC-v4")).digest
    assert got == _snp_chain(amdsev, vcpus, "EPYC-v4", igvm_mode=mode, ap_fpu_zero=False)
    assert got != predict_classic(fw, "sev-snp", vcpus, _host("EPYC-v4")).digest


def test_igvm_wrap_sev_es_legacy_equals_classic(amdsev):
    """SEV-ES measures no metadata page and, on a legacy VM, no FPU field: nothing differs."""
    fw = ovmf.load(amdsev)
    f = parse(wrap_ovmf.wrap(fw, ("sev-es",), 4))
    assert predict(f, "sev-es", 4, _host("EPYC-v4")).digest == \
        predict_classic(fw, "sev-es", 4, _host("EPYC-v4")).digest


def test_explain_lists_exactly_the_pages_without_page_type_zero(amdsev):
    r = subprocess.run([sys.executable, "-m", "harness.cli", "measure", amdsev, "--platform", "sev-snp",
                        "--explain", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    o = OVMF(amdsev)
    assert out["classic"] == _theirs(SevMode.SEV_SNP, 1, "EPYC-v4", amdsev).hex()
    assert out["igvm"] == _snp_chain(amdsev, 1, "EPYC-v4", igvm_mode="zero", ap_fpu_zero=False).hex()
    listed = {}
    for rg in out["ranges"]:
        for gpa in range(int(rg["gpa"], 16), int(rg["end"], 16), 0x1000):
            listed[gpa] = (rg["classic"], rg["igvm"])
    area = _param_area(o)
    want = {}
    for d in o.metadata_items():
        if d.section_type() in (SectionType.SNP_SECRETS, SectionType.CPUID):
            continue
        for gpa in range(d.gpa, d.gpa + d.size, 0x1000):
            want[gpa] = ("ZERO", "UNMEASURED" if area[0] <= gpa < area[0] + area[1] else "NORMAL (zeros)")
    assert listed == want
    assert out["vmsas"] == [] and out["first_order_difference"] is None
    text = subprocess.run([sys.executable, "-m", "harness.cli", "measure", amdsev, "--platform", "sev-snp",
                           "--explain"], capture_output=True, text=True).stdout
    assert "0x00800000-0x00808fff     9 page(s)" in text and "ZERO -> NORMAL (zeros)" in text


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)], capture_output=True, text=True)


def test_measure_cli_on_an_ovmf_image(synthetic, tmp_path):
    want = _theirs(SevMode.SEV_SNP, 1, "EPYC-v4", synthetic).hex()
    r = _cli("measure", synthetic, "--platform", "sev-snp", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["digest"] == want
    assert _cli("measure", synthetic, "--platform", "sev-snp", "--expect", want).returncode == 0
    r = _cli("measure", synthetic, "--platform", "sev-snp", "--vcpus", "2", "--expect", want)
    assert r.returncode == 1 and "differs" in r.stdout and "--ap-state" in r.stdout
    wrapped = tmp_path / "w.igvm"
    assert _cli("wrap-ovmf", synthetic, "--platform", "sev-snp", "-o", wrapped, "--quiet").returncode == 0
    # without --firmware: QEMU's launch beside the igvm crate's model (tests/reference), naming --firmware
    r = _cli("measure", wrapped, "--platform", "sev-snp", "--explain")
    assert r.returncode == 0 and "igvm crate" in r.stdout and "--firmware FW.fd" in r.stdout
    r = _cli("measure", wrapped, "--platform", "sev", "--explain")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--firmware" in r.stderr
    r = _cli("measure", wrapped, "--platform", "sev-snp", "--explain", "--firmware", synthetic)
    assert r.returncode == 0 and "ZERO -> NORMAL (zeros)" in r.stdout and "UNMEASURED" in r.stdout
