"""QEMU's classic (non-IGVM) OVMF launch: what ``-bios OVMF.fd`` makes the SEV firmware measure.

Read in QEMU 10.2 (the order is the measurement):

1. hw/i386/pc_sysfw.c: x86_firmware_configure -> target/i386/sev.c:
   sev_encrypt_flash: the whole image, mapped to end at 4 GiB, goes through
   ``launch_update_data``: LAUNCH_UPDATE_DATA (SEV, SEV-ES) or, for SNP,
   a queued NORMAL update (sev_snp_launch_update_data).
2. SNP only, at launch finish (sev_snp_launch_finish, no IGVM file):
   snp_populate_metadata_pages walks the SEV metadata in table order and
   queues each section with snp_metadata_desc_to_page_type: SNP_SEC_MEM ->
   ZERO, SNP_SECRETS -> SECRETS, CPUID -> CPUID (snp_launch_update_cpuid),
   KERNEL_HASHES -> ZERO without ``-kernel`` (snp_launch_update_kernel_hashes),
   anything else (SVSM_CAA) -> ZERO.  CONTENTS of these page types are zero
   in PAGE_INFO (SNP Firmware ABI), so the CPUID values do not matter.
3. One VMSA per vCPU, in CPU order, measured by KVM (LAUNCH_UPDATE_VMSA /
   SNP_LAUNCH_FINISH).  The BSP keeps QEMU's reset state.  Each AP gets a
   context from sev_es_set_ap_context (x86_firmware_configure ->
   sev_es_save_reset_vector): ``initialize_vmsa`` copies the CPU state into a
   zeroed ``sev_es_save_area`` -- **without** x87 FCW and MXCSR -- then CS
   (selector 0xF000, base = reset block & 0xFFFF0000, limit 0xFFFF, attrib
   0x9B) and RIP (reset block & 0xFFFF) are set, and at every reset
   kvm_arch_reset_vcpu -> sev_es_set_reset_vector -> sev_apply_cpu_context
   loads it, including ``cpu_set_fpuc(env, vmsa.x87_fcw)`` and ``env->mxcsr =
   vmsa.mxcsr``: the APs start with FCW = MXCSR = 0.  QEMU before 10.0 only
   set CS and EIP there (sev_es_set_reset_vector), keeping the reset FCW
   0x37F / MXCSR 0x1F80 -- the state sev-snp-measure models.  The difference
   is measured only where KVM copies the FPU state into the VMSA (SNP and
   INIT2 VMs, see below).  :class:`ApState` selects either.

SEV-ES VM type (the FPU fields): KVM's sev_es_sync_vmsa (Linux
arch/x86/kvm/svm/sev.c) writes x87/SSE state into the VMSA only when the VM
is not ``KVM_X86_DEFAULT_VM``.  QEMU 10.2 creates SEV-ES guests as
``KVM_X86_DEFAULT_VM`` (KVM_SEV_ES_INIT) by default: ``legacy-vm-type``
defaults to auto (sev_guest_instance_init) and auto picks the legacy type
unless ``sev_init2_required()``, which is always false ("Currently no
KVM_SEV_INIT2-specific options are exposed via QEMU"; sev_kvm_type).  So a
default SEV-ES launch measures FCW = MXCSR = 0 in every VMSA;
``legacy-vm-type=off`` (``--vm-type init2``) measures 0x37F / 0x1F80 for the
BSP, which is what sev-snp-measure predicts for SEV-ES.  SNP always uses
KVM_X86_SNP_VM (FPU synced).
"""

from __future__ import annotations

import hashlib
import mmap
from enum import Enum

from harness.errors import HarnessError
from harness.igvm.defs import PlatformType
from harness.igvm.ovmf import PAGE_4K, OvmfImage, SevSectionType
from harness.measure import kvm_vmsa
from harness.measure.kvm_vmsa import HostProfile, Segment, VmType
from harness.measure.measure_sev import SevDigest
from harness.measure.measure_snp import VMSA_GPA, VMSA_TSC_FIELDS, SnpLaunchDigest, SnpPageType
from harness.measure.platforms import platform_type
from harness.record import Factory, Record

#: snp_metadata_desc_to_page_type (target/i386/sev.c); sections not listed are ZERO.
SNP_SECTION_PAGE_TYPE = {
    SevSectionType.SNP_SEC_MEM: SnpPageType.ZERO,
    SevSectionType.SNP_SECRETS: SnpPageType.SECRETS,
    SevSectionType.CPUID: SnpPageType.CPUID,
    SevSectionType.KERNEL_HASHES: SnpPageType.ZERO,  # NORMAL only with -kernel hashes
}


class ApState(str, Enum):
    """Where the APs' initial FPU control state comes from."""

    QEMU_10 = "qemu-10"  # sev_es_set_ap_context: FCW = MXCSR = 0 (QEMU >= 10.0, incl. 10.2)
    QEMU_9 = "qemu-9"    # sev_es_set_reset_vector: reset FCW 0x37F / MXCSR 0x1F80 (QEMU < 10.0)


class Step(Record, frozen=True):
    """One measured update, at 4 KiB granularity for SNP (``length`` bytes from ``gpa``)."""

    kind: str          # normal | zero | unmeasured | secrets | cpuid | vmsa
    gpa: int
    length: int
    source: str
    contents: bytes = b""  # SHA-384 (SNP) of the page for normal and vmsa steps


class ClassicPrediction(Record):
    platform: PlatformType
    digest: bytes
    vcpus: int
    host: HostProfile
    sev_features: int
    ap_state: ApState
    vmsas: list[bytes] = Factory(list)
    steps: list[Step] = Factory(list)

    @property
    def hexdigest(self) -> str:
        return self.digest.hex()


def snp_metadata_steps(fw: OvmfImage) -> list[tuple[SnpPageType, int, int, str]]:
    """(page type, gpa, length, section name) in the order snp_populate_metadata_pages queues them."""
    if fw.sev_metadata is None:
        raise HarnessError(f"{fw.name}: no SEV metadata; QEMU stops the SNP launch ('Failed to locate "
                           "SEV metadata header', sev_snp_launch_finish)", 1)
    return [(SNP_SECTION_PAGE_TYPE.get(s.type, SnpPageType.ZERO), s.gpa, s.size, s.name)
            for s in fw.sev_metadata.sections]


def ap_cpu_state(fw: OvmfImage, host: HostProfile, ap_state: ApState) -> kvm_vmsa.CpuState:
    """QEMU's CPU state of an AP after reset in a classic SEV-ES/SNP launch."""
    rb = fw.reset_block
    if rb is None:
        raise HarnessError(f"{fw.name}: no SEV-ES reset block; QEMU refuses an SEV-ES/SNP launch "
                           "('SEV information block/Firmware GUID Table block not found', "
                           "sev_es_find_reset_vector)", 1)
    state = kvm_vmsa.qemu_reset_state(host.cpu_sig)
    state.segs["cs"] = Segment(0xF000, 0x9B, 0xFFFF, rb.cs_base)
    state.regs["rip"] = rb.ip
    if ap_state is ApState.QEMU_10:
        state.regs["x87_fcw"] = 0  # initialize_vmsa leaves them zero; sev_apply_cpu_context loads them
        state.regs["mxcsr"] = 0
    state.source = f"reset-block/{ap_state.value}"
    return state


def classic_vmsas(fw: OvmfImage, vcpus: int, host: HostProfile, sev_features: int, snp: bool,
                  ap_state: ApState) -> list[bytes]:
    out = [kvm_vmsa.reset_vmsa(host, sev_features, snp=snp)]
    if vcpus > 1:
        ap = kvm_vmsa.kvm_vmsa(ap_cpu_state(fw, host, ap_state), host, sev_features, snp=snp)
        out.extend([ap] * (vcpus - 1))
    return out


def predict_classic(fw: OvmfImage, platform, vcpus: int, host: HostProfile | None = None,
                    ap_state: ApState | str = ApState.QEMU_10, *, steps: bool = False) -> ClassicPrediction:
    """The launch digest of ``-bios`` ``fw`` on ``platform`` with ``vcpus`` vCPUs.

    ``steps=True`` also lists every measured page (for ``measure --explain``; it
    hashes each page a second time)."""
    from harness.igvm.limits import MAX_VCPUS
    host = host or HostProfile()
    ptype = platform_type(platform)
    ap_state = ApState(ap_state)
    if not 1 <= vcpus <= MAX_VCPUS:
        raise HarnessError(f"--vcpus must be 1 to {MAX_VCPUS} (QEMU's q35 limit)")
    if fw.size % PAGE_4K:
        raise HarnessError(f"{fw.name}: {fw.size} bytes is not a whole number of pages", 1)
    view = memoryview(fw.data)
    base = fw.base_gpa
    if ptype == PlatformType.SEV_SNP:
        return _snp(fw, view, base, vcpus, kvm_vmsa.replace(host, vm_type=VmType.SNP), ap_state, steps)
    host.check()
    h = SevDigest()
    h.update(view)
    sha = hashlib.sha256
    pred = ClassicPrediction(ptype, b"", vcpus, host, 0, ap_state)
    if steps:
        pred.steps = [Step("normal", base + off, PAGE_4K, "firmware", sha(view[off:off + PAGE_4K]).digest())
                      for off in range(0, fw.size, PAGE_4K)]
    if ptype == PlatformType.SEV_ES:
        pred.sev_features = kvm_vmsa.vm_sev_features(host, False, None)
        pred.vmsas = classic_vmsas(fw, vcpus, host, pred.sev_features, False, ap_state)
        for cpu, page in enumerate(pred.vmsas):
            h.update(page)
            if steps:
                pred.steps.append(Step("vmsa", VMSA_GPA, PAGE_4K, f"vmsa cpu{cpu}", sha(page).digest()))
    pred.digest = h.digest()
    return pred


def _runs(view: memoryview, gpa: int, data=None):
    """The firmware's pages as ``(gpa, data, pages, repeat)`` stretches
    (harness.measure.pages.Update.segments): runs of distinct pages as one
    view, runs of one page repeated (OVMF's 0xFF variable store, zeros) as
    that page, so the chain hashes each repeated page once.  Neighbours are
    compared as bytes (memcmp; a page's SHA-384 costs ~30 times more)."""
    raw = data if isinstance(data, (bytes, bytearray, mmap.mmap)) else view.tobytes()
    n = len(view) // PAGE_4K

    def same(a: int, b: int) -> bool:
        return raw[a * PAGE_4K:(a + 1) * PAGE_4K] == raw[b * PAGE_4K:(b + 1) * PAGE_4K]

    start = 0
    k = 1
    while k <= n:
        if k < n and not same(k, k - 1):
            k += 1
            continue
        # pages [start, k - 1] differ from their predecessors; k repeats k - 1 (or the end)
        end = k
        while end < n and same(end, k - 1):
            end += 1
        distinct_end = k - 1 if end > k else k  # page k - 1 opens the repeated run
        if distinct_end > start:
            yield (gpa + start * PAGE_4K, view[start * PAGE_4K:distinct_end * PAGE_4K],
                   distinct_end - start, False)
        if end > k:
            yield gpa + (k - 1) * PAGE_4K, view[(k - 1) * PAGE_4K:k * PAGE_4K], end - k + 1, True
        start = k = end
        k += 1


def _snp(fw, view, base, vcpus, host, ap_state, want_steps: bool) -> ClassicPrediction:
    ld = SnpLaunchDigest()
    steps: list[Step] = []
    sha = hashlib.sha384
    ld.normal_segments(base, PAGE_4K, _runs(view, base, fw.data))
    if want_steps:
        pages = [view[off:off + PAGE_4K] for off in range(0, fw.size, PAGE_4K)]
        steps.extend(Step("normal", base + i * PAGE_4K, PAGE_4K, "firmware", sha(page).digest())
                     for i, page in enumerate(pages))
    for ptype, gpa, size, name in snp_metadata_steps(fw):
        ld.typed_pages(ptype, gpa, size)
        if want_steps:
            steps.extend(Step(ptype.name.lower(), g, PAGE_4K, name) for g in range(gpa, gpa + size, PAGE_4K))
    feats = kvm_vmsa.vm_sev_features(host, True, None)
    pred = ClassicPrediction(PlatformType.SEV_SNP, b"", vcpus, host, feats, ap_state, steps=steps)
    pred.vmsas = classic_vmsas(fw, vcpus, host, feats, True, ap_state)
    for cpu, page in enumerate(pred.vmsas):
        ld.vmsa_page(page)
        if not want_steps:
            continue
        masked = bytearray(page)
        lo, hi = VMSA_TSC_FIELDS  # as SnpLaunchDigest.vmsa_page hashes it
        masked[lo:hi] = bytes(hi - lo)
        steps.append(Step("vmsa", VMSA_GPA, PAGE_4K, f"vmsa cpu{cpu}", sha(masked).digest()))
    pred.digest = ld.ld
    return pred


__all__ = ["ApState", "ClassicPrediction", "SNP_SECTION_PAGE_TYPE", "Step", "ap_cpu_state",
           "classic_vmsas", "predict_classic", "snp_metadata_steps"]
