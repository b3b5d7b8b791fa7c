"""Predict the launch digest QEMU+KVM make the AMD firmware compute for an IGVM file.

:class:`LaunchDigest` joins the launch plan (:class:`pages.Planner`, a
consumer of the walk), the digest primitives (:mod:`measure_sev`,
:mod:`measure_snp`), which hash each update as the plan hands it over, and
the KVM VMSA model (:mod:`kvm_vmsa`, loaded only to build VMSAs).
:func:`measure` does it all in the one pass that validates the file;
:func:`predict` replays a file already parsed (or built).
"""

from __future__ import annotations

from harness.errors import HarnessError
from harness.igvm import model as m
from harness.igvm.defs import PlatformType
from harness.igvm.walk import replay
from harness.measure import kvm_vmsa
from harness.measure.kvm_vmsa import HostProfile, VmType
from harness.measure.measure_snp import SnpPageType
from harness.measure.pages import Kind, Planner, Update, platform_type
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
    """The launch digest for ``platform`` with ``vcpus`` vCPUs on ``host``
    (one replay of ``f``'s headers)."""
    digest = LaunchDigest(platform, vcpus, host, policy)
    if digest.planner.failed() is None:
        replay(f, [digest.planner])
    return digest.result()


def measure(data, platform, vcpus: int, host: HostProfile | None = None,
            policy: int | None = None, source: str | None = None):
    """Validate IGVM bytes and predict their launch digest in one pass over
    the headers: ``(IgvmFile, Prediction)``."""
    digest = LaunchDigest(platform, vcpus, host, policy)
    f = walk(data, [digest], source)
    return f, digest.result()


def walk(data, digests, source: str | None = None) -> m.IgvmFile:
    """Validate IGVM bytes while ``digests`` (:class:`LaunchDigest` s) hash
    what their planners hand over: one pass over the headers.  A file that
    breaks a rule of the specification is refused as
    :func:`harness.igvm.parser.parse` refuses it (IgvmFormatError), before
    any refusal of QEMU's (each digest's :meth:`LaunchDigest.result` raises
    that)."""
    from harness.igvm.parser import scan
    from harness.igvm.rules import IgvmFormatError

    f, violations = scan(data, stop_first=True,
                         consumers=[d.planner for d in digests if d.planner.failed() is None])
    if violations or f is None:
        raise IgvmFormatError.from_violation(violations[0], source)
    return f


class LaunchDigest:
    """One platform's launch digest, fed by its :class:`~pages.Planner` as
    the walk goes by: every update is hashed when QEMU's order is known
    (runs of file data in one call), the VMSAs at the end (:meth:`result`)."""

    def __init__(self, platform, vcpus: int, host: HostProfile | None = None,
                 policy: int | None = None) -> None:
        self.ptype = platform_type(platform)
        self.vcpus = vcpus
        self.host = host or HostProfile()
        self.policy = policy
        self.snp = self.ptype == PlatformType.SEV_SNP
        if self.snp:
            from harness.measure.measure_snp import SnpLaunchDigest

            self.ld = SnpLaunchDigest()
            sink = self._snp_update
        else:
            from harness.measure.measure_sev import SevDigest  # SEV / SEV-ES only

            self.h = SevDigest()
            sink = self._sev_update
        self.planner = Planner(self.ptype, vcpus, sink)

    def _sev_update(self, u: Update) -> None:
        if u.kind in (Kind.NORMAL, Kind.ZERO):
            self.h.update_segments(u.segments(), u.page_size)

    def _snp_update(self, u: Update) -> None:
        if u.kind in (Kind.NORMAL, Kind.ZERO):
            # cgs_set_guest_state: ZERO regions go through launch_update_data too, so
            # they are NORMAL pages whose contents are zeros (page data None)
            self.ld.normal_segments(u.gpa, u.page_size, u.segments())
        else:
            self.ld.typed_pages(_SNP_KIND[u.kind], u.gpa, u.length)

    def result(self) -> Prediction:
        """The prediction (the planner's refusal raised, if it made one)."""
        planner = self.planner
        exc = planner.failed()
        if exc is not None:
            raise exc
        if self.snp:
            return self._snp_result()
        host, ptype, policy = self.host, self.ptype, self.policy
        host.check()
        if policy is None:
            policy = DEFAULT_SEV_POLICY | (SEV_POLICY_ES if ptype == PlatformType.SEV_ES else 0)
        _check_sev_es_policy(ptype, policy)
        pred = Prediction(ptype, b"", self.vcpus, host, policy, 0, updates=planner.updates,
                          measured_bytes=planner.measured, notes=planner.notes)
        if ptype == PlatformType.SEV_ES:
            contexts = planner.vp_contexts
            vp0 = contexts.get(0)
            vp0_features = kvm_vmsa.sev_features(vp0) if vp0 else None
            if host.vm_type is VmType.LEGACY:
                for idx, ctx in contexts.items():
                    feats = kvm_vmsa.sev_features(ctx)
                    if feats:
                        raise HarnessError(
                            f"the VMSA for vCPU {idx} sets sev_features {feats:#x}, but with the legacy VM "
                            "type (QEMU 10.2's default: legacy-vm-type unset behaves as on) KVM supports "
                            "none, so QEMU refuses it (check_sev_features); set legacy-vm-type=off "
                            "(--vm-type init2) or clear sev_features", 1)
            pred.sev_features = kvm_vmsa.vm_sev_features(host, False, vp0_features)
            _add_vmsas(pred, contexts, host, snp=False)
            for page in pred.vmsas:
                self.h.update(page)
        pred.digest = self.h.digest()
        return pred

    def _snp_result(self) -> Prediction:
        planner = self.planner
        # sev-snp-guest always uses KVM_X86_SNP_VM + KVM_SEV_INIT2 (sev_snp_kvm_type).
        host = kvm_vmsa.replace(self.host, vm_type=VmType.SNP)
        policy = self.policy
        if policy is None:
            policy = planner.snp_policy if planner.snp_policy is not None else DEFAULT_SNP_POLICY
        vp0 = planner.vp_contexts.get(0)
        vp0_features = kvm_vmsa.sev_features(vp0) if vp0 else None
        pred = Prediction(PlatformType.SEV_SNP, b"", self.vcpus, host, policy,
                          kvm_vmsa.vm_sev_features(host, True, vp0_features),
                          updates=planner.updates, measured_bytes=planner.measured,
                          notes=planner.notes)
        _add_vmsas(pred, planner.vp_contexts, host, snp=True)
        ld = self.ld
        for page in pred.vmsas:
            ld.vmsa_page(page)
        pred.digest = ld.ld
        if planner.id_block is not None:
            pred.id_block_ld = bytes(planner.id_block.ld)
        return pred


def _add_vmsas(pred: Prediction, contexts: dict[int, bytes], host: HostProfile, snp: bool) -> None:
    for cpu in range(pred.vcpus):
        ctx = contexts.get(cpu)
        if ctx is not None:
            pred.vmsas.append(kvm_vmsa.context_vmsa(ctx, host, pred.sev_features, snp=snp))
            pred.vmsa_sources.append("igvm")
        else:
            pred.vmsas.append(kvm_vmsa.reset_vmsa(host, pred.sev_features, snp=snp))
            pred.vmsa_sources.append("reset")
