"""Predict the launch digest QEMU+KVM make the AMD firmware compute for an IGVM file.

``predict(file, platform, vcpus, host)`` combines the launch plan
(:mod:`pages`), the KVM VMSA model (:mod:`kvm_vmsa`) and the digest
primitives (:mod:`measure_sev`, :mod:`measure_snp`).
"""

from __future__ import annotations

from harness.errors import HarnessError
from harness.igvm import model as m
from harness.igvm.defs import PlatformType
from harness.measure import kvm_vmsa
from harness.measure.kvm_vmsa import HostProfile, VmType
from harness.measure.measure_snp import SnpLaunchDigest, SnpPageType
from harness.measure.pages import Kind, LaunchPlan, plan_launch, platform_type
from harness.record import Factory, Record

#: QEMU's default sev-guest policy (target/i386/sev.c DEFAULT_GUEST_POLICY: NODBG).
DEFAULT_SEV_POLICY = 0x1
SEV_POLICY_ES = 0x4
#: QEMU's default sev-snp-guest policy (DEFAULT_SEV_SNP_POLICY: SMT allowed, reserved bit 17).
DEFAULT_SNP_POLICY = 0x30000

_SNP_KIND = {Kind.UNMEASURED: SnpPageType.UNMEASURED, Kind.SECRETS: SnpPageType.SECRETS,
             Kind.CPUID: SnpPageType.CPUID}


class Prediction(Record):
    platform: PlatformType
    digest: bytes
    vcpus: int
    host: HostProfile
    policy: int
    sev_features: int
    vmsas: list[bytes] = Factory(list)
    vmsa_sources: list[str] = Factory(list)
    updates: int = 0
    measured_bytes: int = 0
    id_block_ld: bytes | None = None
    notes: list[str] = Factory(list)

    @property
    def hexdigest(self) -> str:
        return self.digest.hex()

    def as_dict(self) -> dict:
        return {
            "platform": {PlatformType.SEV: "sev", PlatformType.SEV_ES: "sev-es",
                         PlatformType.SEV_SNP: "sev-snp"}[self.platform],
            "digest": self.hexdigest, "algorithm": "sha384" if self.platform == PlatformType.SEV_SNP
            else "sha256",
            "vcpus": self.vcpus, "policy": f"{self.policy:#x}", "sev_features": f"{self.sev_features:#x}",
            "vm_type": self.host.vm_type.value if self.platform != PlatformType.SEV_SNP else "snp",
            "kernel_profile": self.host.kernel, "cpu_signature": f"{self.host.cpu_sig:#x}",
            "vmsa_sources": self.vmsa_sources, "launch_updates": self.updates,
            "measured_bytes": self.measured_bytes,
            "id_block_ld": self.id_block_ld.hex() if self.id_block_ld else None,
            "id_block_matches": (self.id_block_ld == self.digest) if self.id_block_ld else None,
            "notes": self.notes,
        }


def _check_sev_es_policy(ptype: PlatformType, policy: int) -> None:
    es = bool(policy & SEV_POLICY_ES)
    if ptype == PlatformType.SEV_ES and not es:
        raise HarnessError(f"policy {policy:#x} lacks the ES bit (0x4): QEMU would run plain SEV and select "
                           "the SEV platform of the file instead (sev_es_enabled)")
    if ptype == PlatformType.SEV and es:
        raise HarnessError(f"policy {policy:#x} has the ES bit (0x4): QEMU would select the SEV-ES platform")


#: The most vCPUs QEMU 10.2 starts a q35 guest with (hw/i386/pc_q35.c:
#: pc_q35_machine_options, ``max_cpus``); a larger count is no launch at all.
from harness.igvm.limits import MAX_VCPUS  # noqa: E402  (one constant, kept here for callers)


def predict(f: m.IgvmFile, platform, vcpus: int, host: HostProfile | None = None,
            policy: int | None = None) -> Prediction:
    """The launch digest for ``platform`` with ``vcpus`` vCPUs on ``host``."""
    host = host or HostProfile()
    ptype = platform_type(platform)
    plan = plan_launch(f, ptype, vcpus)
    if ptype == PlatformType.SEV_SNP:
        return _predict_snp(plan, vcpus, host, policy)
    from harness.measure.measure_sev import SevDigest  # SEV / SEV-ES only

    host.check()
    if policy is None:
        policy = DEFAULT_SEV_POLICY | (SEV_POLICY_ES if ptype == PlatformType.SEV_ES else 0)
    _check_sev_es_policy(ptype, policy)
    h = SevDigest()
    for u in plan.updates:
        if u.kind in (Kind.NORMAL, Kind.ZERO):
            h.update_pages(u.pages, u.page_size)
    pred = Prediction(ptype, b"", vcpus, host, policy, 0, updates=len(plan.updates),
                      measured_bytes=sum(u.length for u in plan.updates
                                         if u.kind in (Kind.NORMAL, Kind.ZERO)), notes=plan.notes)
    if ptype == PlatformType.SEV_ES:
        vp0 = plan.vp_contexts.get(0)
        vp0_features = kvm_vmsa.read_fields(vp0)[1]["sev_features"] if vp0 else None
        if host.vm_type is VmType.LEGACY:
            for idx, ctx in plan.vp_contexts.items():
                feats = kvm_vmsa.read_fields(ctx)[1]["sev_features"]
                if feats:
                    raise HarnessError(
                        f"the VMSA for vCPU {idx} sets sev_features {feats:#x}, but with the legacy VM type "
                        "(QEMU 10.2's default: legacy-vm-type unset behaves as on) KVM supports none, so "
                        "QEMU refuses it (check_sev_features); set legacy-vm-type=off (--vm-type init2) "
                        "or clear sev_features", 1)
        pred.sev_features = kvm_vmsa.vm_sev_features(host, False, vp0_features)
        _add_vmsas(pred, plan, host, snp=False)
        for page in pred.vmsas:
            h.update(page)
    pred.digest = h.digest()
    return pred


def _add_vmsas(pred: Prediction, plan: LaunchPlan, host: HostProfile, snp: bool) -> None:
    for cpu in range(pred.vcpus):
        ctx = plan.vp_contexts.get(cpu)
        if ctx is not None:
            pred.vmsas.append(kvm_vmsa.context_vmsa(ctx, host, pred.sev_features, snp=snp))
            pred.vmsa_sources.append("igvm")
        else:
            pred.vmsas.append(kvm_vmsa.reset_vmsa(host, pred.sev_features, snp=snp))
            pred.vmsa_sources.append("reset")


_UNITS_PER_CALL = 1 << 16  # 4 KiB units handed to the SNP chain at once (256 MiB of guest pages)


def _predict_snp(plan: LaunchPlan, vcpus: int, host: HostProfile, policy: int | None) -> Prediction:
    # sev-snp-guest always uses KVM_X86_SNP_VM + KVM_SEV_INIT2 (sev_snp_kvm_type).
    host = kvm_vmsa.replace(host, vm_type=VmType.SNP)
    if policy is None:
        policy = plan.snp_policy if plan.snp_policy is not None else DEFAULT_SNP_POLICY
    ld = SnpLaunchDigest()
    measured = 0
    for u in plan.updates:
        if u.kind in (Kind.NORMAL, Kind.ZERO):
            # cgs_set_guest_state: ZERO regions go through launch_update_data too, so
            # they are NORMAL pages whose contents are zeros (page data None).
            # in slices of at most _UNITS_PER_CALL 4 KiB units: a run of 2 MiB zero
            # pages would otherwise expand to 512 list entries per 32-byte header
            # (memory past the file size); the chain is sequential, so the digest is the same
            step = max(1, _UNITS_PER_CALL * 0x1000 // u.page_size)
            for i in range(0, len(u.pages), step):
                ld.normal_page_list(u.gpa + i * u.page_size, u.pages[i:i + step], u.page_size)
            measured += u.length
        else:
            ld.typed_pages(_SNP_KIND[u.kind], u.gpa, u.length)
    vp0 = plan.vp_contexts.get(0)
    vp0_features = kvm_vmsa.read_fields(vp0)[1]["sev_features"] if vp0 else None
    pred = Prediction(PlatformType.SEV_SNP, b"", vcpus, host, policy,
                      kvm_vmsa.vm_sev_features(host, True, vp0_features),
                      updates=len(plan.updates), measured_bytes=measured, notes=plan.notes)
    _add_vmsas(pred, plan, host, snp=True)
    for page in pred.vmsas:
        ld.vmsa_page(page)
    pred.digest = ld.ld
    if plan.id_block is not None:
        pred.id_block_ld = bytes(plan.id_block.ld)
    return pred
