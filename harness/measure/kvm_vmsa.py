"""The VMSA that KVM measures, from QEMU's CPU state.

QEMU cannot hand a VMSA to KVM.  It copies *some* fields of the IGVM VP
context into its CPU state (target/i386/sev.c: sev_apply_cpu_context), puts
that state into KVM with the ordinary KVM_SET_* ioctls, and KVM builds the
VMSA it measures from its VMCB (Linux arch/x86/kvm/svm/sev.c:
sev_es_sync_vmsa, which memcpy()s ``vmcb->save`` and then overwrites GPRs,
xcr0, pkru, xss, dr6, sev_features and -- only for VMs not created with the
legacy KVM_SEV_ES_INIT -- the x87/SSE state).  So the measured VMSA is the
result of two transformations, modelled here as two functions:

1. :func:`qemu_cpu_state` -- what QEMU's CPU state holds (IGVM VP context via
   sev_apply_cpu_context, or QEMU's reset state for a vCPU without one).
2. :func:`kvm_vmsa` -- what KVM writes into the VMSA from that state.

Host-dependent inputs are explicit in :class:`HostProfile`.  KVM facts relied
on (read in torvalds/linux, arch/x86/kvm):
- svm/svm.c svm_set_efer: ``vmcb->save.efer = efer | EFER_SVME``.
- svm/svm.c svm_set_cr0: CD and NW cleared while KVM_X86_QUIRK_CD_NW_CLEARED
  is enabled (the default).
- svm/svm.c svm_set_cr4: ``cr4 |= host CR4.MCE``.
- x86.c __set_regs: RFLAGS is written ``| X86_EFLAGS_FIXED`` (bit 1).
- svm/svm.c svm_set_segment: attrib rebuilt from kvm_segment fields (12 bits),
  P cleared for unusable segments; CPL taken from SS.DPL.
- svm/svm.c svm_set_gdt/svm_set_idt: only base and limit (u16) are stored.
- svm/sev.c sev_es_sync_vmsa: ``save->sev_features = sev->vmsa_features``;
  FPU fields only when ``vm_type != KVM_X86_DEFAULT_VM``; refuses DR7 bits
  other than DR7_FIXED_1.
- x86.c __kvm_set_xcr: XCR0 without the x87 bit is rejected.
"""

from __future__ import annotations

import struct
from enum import Enum

from harness.errors import HarnessError
from harness.record import Factory, Record, replace

VMSA_SIZE = 0x1000

# ---------------------------------------------------------------------------
# Layout: AMD64 APM vol. 2, Table B-4 (VMSA layout, state save area for SEV-ES)
# ---------------------------------------------------------------------------
SEGMENTS = ("es", "cs", "ss", "ds", "fs", "gs", "gdtr", "ldtr", "idtr", "tr")
SEGMENT_OFFSET = {name: 0x10 * i for i, name in enumerate(SEGMENTS)}

#: name -> (offset, struct format) for the scalar fields this model touches.
FIELDS: dict[str, tuple[int, str]] = {
    "vmpl": (0xCA, "B"), "cpl": (0xCB, "B"), "efer": (0xD0, "Q"),
    "xss": (0x140, "Q"), "cr4": (0x148, "Q"), "cr3": (0x150, "Q"), "cr0": (0x158, "Q"),
    "dr7": (0x160, "Q"), "dr6": (0x168, "Q"), "rflags": (0x170, "Q"), "rip": (0x178, "Q"),
    "rsp": (0x1D8, "Q"), "rax": (0x1F8, "Q"),
    "star": (0x200, "Q"), "lstar": (0x208, "Q"), "cstar": (0x210, "Q"), "sfmask": (0x218, "Q"),
    "kernel_gs_base": (0x220, "Q"), "sysenter_cs": (0x228, "Q"), "sysenter_esp": (0x230, "Q"),
    "sysenter_eip": (0x238, "Q"), "cr2": (0x240, "Q"), "g_pat": (0x268, "Q"),
    "pkru": (0x2E8, "I"), "tsc_aux": (0x2EC, "I"),
    "guest_tsc_scale": (0x2F0, "Q"), "guest_tsc_offset": (0x2F8, "Q"),
    "rcx": (0x308, "Q"), "rdx": (0x310, "Q"), "rbx": (0x318, "Q"),
    "rbp": (0x328, "Q"), "rsi": (0x330, "Q"), "rdi": (0x338, "Q"),
    "r8": (0x340, "Q"), "r9": (0x348, "Q"), "r10": (0x350, "Q"), "r11": (0x358, "Q"),
    "r12": (0x360, "Q"), "r13": (0x368, "Q"), "r14": (0x370, "Q"), "r15": (0x378, "Q"),
    "sev_features": (0x3B0, "Q"), "xcr0": (0x3E8, "Q"),
    "x87_dp": (0x400, "Q"), "mxcsr": (0x408, "I"), "x87_ftw": (0x40C, "H"),
    "x87_fsw": (0x40E, "H"), "x87_fcw": (0x410, "H"), "x87_fop": (0x412, "H"),
    "x87_ds": (0x414, "H"), "x87_cs": (0x416, "H"), "x87_rip": (0x418, "Q"),
}
GPRS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")

#: Fields QEMU copies from an IGVM VMSA (target/i386/sev.c: check_vmsa_supported
#: clears exactly these before requiring the rest of the page to be zero).
QEMU_SUPPORTED_FIELDS = frozenset(
    ("efer", "cr0", "cr3", "cr4", "xcr0", "dr6", "dr7", "rip", "rflags", "g_pat",
     "x87_fcw", "mxcsr", "sev_features") + GPRS)
QEMU_SUPPORTED_SEGMENTS = frozenset(SEGMENTS)

# Architectural bits
EFER_LME, EFER_LMA, EFER_SVME = 1 << 8, 1 << 10, 1 << 12
CR0_PE, CR0_ET, CR0_NW, CR0_CD, CR0_PG = 1, 1 << 4, 1 << 29, 1 << 30, 1 << 31
CR4_PAE, CR4_MCE = 1 << 5, 1 << 6
RFLAGS_FIXED, RFLAGS_VM = 1 << 1, 1 << 17
DR7_FIXED_1 = 0x400
SEV_FEAT_SNP_ACTIVE = 1 << 0
SEV_FEAT_DEBUG_SWAP = 1 << 5


class Segment(Record, frozen=True):
    selector: int = 0
    attrib: int = 0
    limit: int = 0
    base: int = 0

    def pack(self) -> bytes:
        return struct.pack("<HHIQ", self.selector & 0xFFFF, self.attrib & 0xFFFF,
                           self.limit & 0xFFFFFFFF, self.base & 0xFFFFFFFFFFFFFFFF)


def read_fields(page: bytes) -> tuple[dict[str, Segment], dict[str, int]]:
    """Decode the segments and modelled scalar fields of a VMSA page."""
    if len(page) < VMSA_SIZE:
        page = bytes(page) + bytes(VMSA_SIZE - len(page))
    segs = {n: Segment(*struct.unpack_from("<HHIQ", page, off)) for n, off in SEGMENT_OFFSET.items()}
    regs = {n: struct.unpack_from("<" + fmt, page, off)[0] for n, (off, fmt) in FIELDS.items()}
    return segs, regs


def sev_features(page) -> int:
    """The VMSA's SEV_FEATURES (what QEMU checks and passes to KVM), read alone."""
    off = FIELDS["sev_features"][0]
    return int.from_bytes(bytes(page[off:off + 8]).ljust(8, b"\0"), "little")


def write_vmsa(segs: dict[str, Segment], regs: dict[str, int]) -> bytes:
    page = bytearray(VMSA_SIZE)
    for name, seg in segs.items():
        off = SEGMENT_OFFSET[name]
        page[off:off + 16] = seg.pack()
    for name, value in regs.items():
        off, fmt = FIELDS[name]
        struct.pack_into("<" + fmt, page, off, value & ((1 << (8 * struct.calcsize(fmt))) - 1))
    return bytes(page)


# ---------------------------------------------------------------------------
# Host inputs
# ---------------------------------------------------------------------------
class VmType(str, Enum):
    """How QEMU created the VM (target/i386/sev.c: sev_kvm_type, sev_common_kvm_init)."""

    LEGACY = "legacy"  # KVM_X86_DEFAULT_VM + KVM_SEV_INIT / KVM_SEV_ES_INIT
    INIT2 = "init2"    # KVM_X86_SEV(_ES)_VM + KVM_SEV_INIT2 (Linux >= 6.10)
    SNP = "snp"        # KVM_X86_SNP_VM + KVM_SEV_INIT2 (always for sev-snp-guest)


class KernelProfile(Record, frozen=True):
    """What a host kernel does with sev_features for a legacy (KVM_SEV_ES_INIT) VM."""

    name: str
    legacy_sev_features: int
    has_init2: bool
    source: str


#: Kernel behaviours.  DebugSwap was enabled by default for SEV-ES in 6.6-6.7
#: (commit d1f85fbe836e) and turned off by default again ("KVM: SEV: do not
#: enable DebugSwap by default", backported to stable); KVM_SEV_INIT2 arrived in 6.10.
KERNEL_PROFILES: dict[str, KernelProfile] = {
    "linux-5.11": KernelProfile("linux-5.11", 0, False, "SEV-ES without sev_features support"),
    "linux-6.6": KernelProfile("linux-6.6", SEV_FEAT_DEBUG_SWAP, False,
                               "sev_es_debug_swap_enabled=true by default (6.6-6.7)"),
    "linux-6.8": KernelProfile("linux-6.8", 0, False, "DebugSwap off by default for KVM_SEV_ES_INIT"),
    "linux-6.10": KernelProfile("linux-6.10", 0, True, "KVM_SEV_INIT2; legacy init keeps vmsa_features 0"),
}
DEFAULT_KERNEL = "linux-6.10"


def cpu_signature(family: int, model: int, stepping: int) -> int:
    """CPUID.1:EAX as QEMU computes it for a CPU model (also what RDX holds at reset)."""
    if family > 0xF:
        base_family, ext_family = 0xF, family - 0xF
    else:
        base_family, ext_family = family, 0
    return ((ext_family & 0xFF) << 20) | (((model >> 4) & 0xF) << 16) | (base_family << 8) \
        | ((model & 0xF) << 4) | (stepping & 0xF)


#: family/model/stepping of QEMU's AMD CPU models (target/i386/cpu.c builtin_x86_defs).
QEMU_CPU_MODELS: dict[str, tuple[int, int, int]] = {
    "EPYC": (23, 1, 2), "EPYC-v1": (23, 1, 2), "EPYC-v2": (23, 1, 2),
    "EPYC-v3": (23, 1, 2), "EPYC-v4": (23, 1, 2),
    "EPYC-Rome": (23, 49, 0), "EPYC-Rome-v1": (23, 49, 0), "EPYC-Rome-v2": (23, 49, 0),
    "EPYC-Rome-v3": (23, 49, 0), "EPYC-Milan": (25, 1, 1), "EPYC-Milan-v1": (25, 1, 1),
    "EPYC-Milan-v2": (25, 1, 1), "EPYC-Genoa": (25, 17, 0), "EPYC-Genoa-v1": (25, 17, 0),
}
DEFAULT_CPU_MODEL = "EPYC-v4"


class HostProfile(Record, frozen=True):
    """Everything outside the IGVM file that changes the measured VMSAs."""

    kernel: str = DEFAULT_KERNEL
    vm_type: VmType = VmType.LEGACY  # QEMU 10.2 default (legacy-vm-type unset == auto == legacy)
    cpu_sig: int = cpu_signature(*QEMU_CPU_MODELS[DEFAULT_CPU_MODEL])
    host_cr4_mce: bool = True
    cd_nw_quirk: bool = True
    #: KVM_X86_SEV_VMSA_FEATURES of the host (INIT2/SNP VMs); None = not known, accept all.
    supported_vmsa_features: int | None = None

    @property
    def kernel_profile(self) -> KernelProfile:
        try:
            return KERNEL_PROFILES[self.kernel]
        except KeyError:
            raise HarnessError(f"unknown kernel profile {self.kernel!r}; known: "
                               + ", ".join(KERNEL_PROFILES)) from None

    @property
    def syncs_fpu(self) -> bool:
        return self.vm_type is not VmType.LEGACY

    def check(self) -> None:
        prof = self.kernel_profile
        if self.vm_type is not VmType.LEGACY and not prof.has_init2:
            raise HarnessError(f"VM type {self.vm_type.value} needs KVM_SEV_INIT2, which {prof.name} "
                               "lacks (Linux >= 6.10)")


# ---------------------------------------------------------------------------
# Stage 1: QEMU CPU state (kept in VMSA terms)
# ---------------------------------------------------------------------------
class CpuState(Record):
    """QEMU's CPUX86State for one vCPU, expressed in VMSA field terms."""

    segs: dict[str, Segment]
    regs: dict[str, int] = Factory(dict)
    source: str = "reset"


def qemu_reset_state(cpu_sig: int) -> CpuState:
    """x86_cpu_reset (target/i386/cpu.c): real mode at 0xFFFFFFF0, RDX = CPU signature."""
    data = Segment(0, 0x93, 0xFFFF, 0)
    segs = {n: data for n in ("es", "ss", "ds", "fs", "gs")}
    segs["cs"] = Segment(0xF000, 0x9B, 0xFFFF, 0xFFFF0000)
    segs["gdtr"] = Segment(0, 0, 0xFFFF, 0)
    segs["idtr"] = Segment(0, 0, 0xFFFF, 0)
    segs["ldtr"] = Segment(0, 0x82, 0xFFFF, 0)
    segs["tr"] = Segment(0, 0x8B, 0xFFFF, 0)
    regs = {n: 0 for n in GPRS}
    regs.update(rdx=cpu_sig, rip=0xFFF0, rflags=0x2, cr0=0x60000010, cr3=0, cr4=0, efer=0,
                dr6=0xFFFF0FF0, dr7=DR7_FIXED_1, g_pat=0x0007040600070406, xcr0=1,
                x87_fcw=0x37F, mxcsr=0x1F80, sev_features=0)
    return CpuState(segs, regs, "reset")


def qemu_cpu_state(vmsa: bytes, cpu_sig: int) -> CpuState:
    """What sev_apply_cpu_context (target/i386/sev.c) leaves in QEMU's CPU state.

    - Only QEMU_SUPPORTED_FIELDS are copied (check_vmsa_supported refuses others).
    - Segment attributes go through FLAGS_VMSA_TO_SEGCACHE, which keeps bits 0-11.
    - **TR base is loaded from the LDTR base** (``cpu_x86_load_seg_cache(env,
      R_TR, vmsa.tr.selector, vmsa.ldtr.base, ...)``) -- a QEMU 10.2 bug that
      makes the measured TR.base differ from the file's.
    - CR0/CR4 go through cpu_x86_update_cr0/cr4, which take ``uint32_t`` and
      set CR0.ET; CR0.PG with EFER.LME and CR4.PAE sets EFER.LMA.
    - GDTR/IDTR keep base and limit (attributes are dropped later by KVM).

    Assumption: a file with EFER.LME and CR0.PG but without EFER.LMA gets LMA
    (QEMU sets it on the first application after reset; whether a later
    re-application, which does not, reaches KVM first depends on QEMU's
    register synchronisation order).  Files that set LMA themselves are exact.
    """
    segs_in, regs_in = read_fields(vmsa)
    rest = reset = qemu_reset_state(cpu_sig)
    segs = dict(reset.segs)
    for name in ("cs", "ds", "es", "fs", "gs", "ss", "ldtr"):
        s = segs_in[name]
        segs[name] = Segment(s.selector, s.attrib & 0x0FFF, s.limit, s.base)
    t = segs_in["tr"]
    segs["tr"] = Segment(t.selector, t.attrib & 0x0FFF, t.limit, segs_in["ldtr"].base)
    for name in ("gdtr", "idtr"):
        s = segs_in[name]
        segs[name] = Segment(0, 0, s.limit, s.base)
    regs = dict(rest.regs)
    for name in QEMU_SUPPORTED_FIELDS:
        regs[name] = regs_in[name]
    efer = regs["efer"]
    cr4 = regs["cr4"] & 0xFFFFFFFF
    cr0 = regs["cr0"] & 0xFFFFFFFF
    if (cr0 & CR0_PG) and (efer & EFER_LME) and (cr4 & CR4_PAE):
        efer |= EFER_LMA
    regs.update(efer=efer, cr4=cr4, cr0=cr0 | CR0_ET)
    return CpuState(segs, regs, "igvm")


# ---------------------------------------------------------------------------
# Stage 2: KVM
# ---------------------------------------------------------------------------
def vm_sev_features(host: HostProfile, snp: bool, vp0_sev_features: int | None) -> int:
    """``sev->vmsa_features`` that KVM writes into every VMSA of the VM.

    - SNP / INIT2: QEMU pre-processes the IGVM file and passes vCPU 0's VMSA
      sev_features (minus SNP_ACTIVE) as ``kvm_sev_init.vmsa_features``
      (target/i386/sev.c: sev_common_kvm_init); KVM adds SNP_ACTIVE for SNP.
      Without a VP context for vCPU 0 that value is 0.
    - LEGACY: the kernel decides (:data:`KERNEL_PROFILES`).
    """
    if snp or host.vm_type is not VmType.LEGACY:
        value = (vp0_sev_features or 0) & ~SEV_FEAT_SNP_ACTIVE
        if host.supported_vmsa_features is not None and value & ~host.supported_vmsa_features:
            raise HarnessError(f"vCPU 0's VMSA asks for sev_features {value:#x} but the host supports only "
                               f"{host.supported_vmsa_features:#x} (KVM_X86_SEV_VMSA_FEATURES); QEMU refuses "
                               "it (check_sev_features)", 1)
        return value | (SEV_FEAT_SNP_ACTIVE if snp else 0)
    return host.kernel_profile.legacy_sev_features


def kvm_vmsa(state: CpuState, host: HostProfile, sev_features: int, *, snp: bool = False) -> bytes:
    """The VMSA page KVM measures for one vCPU (sev_es_sync_vmsa)."""
    regs = state.regs
    if regs["dr7"] & ~DR7_FIXED_1:
        raise HarnessError(f"vCPU DR7 {regs['dr7']:#x} has bits other than DR7_FIXED_1; KVM refuses "
                           "to encrypt such a VMSA (arch/x86/kvm/svm/sev.c: sev_es_sync_vmsa)", 1)
    if not regs["xcr0"] & 1:
        raise HarnessError(f"XCR0 {regs['xcr0']:#x} lacks the x87 bit; KVM_SET_XCRS rejects it "
                           "(arch/x86/kvm/x86.c: __kvm_set_xcr)", 1)
    if regs["rflags"] & RFLAGS_VM:
        raise HarnessError("a virtual-8086 initial state is not modelled (QEMU puts v8086 segments)", 1)
    out: dict[str, int] = {n: 0 for n in FIELDS}
    segs = {}
    for name, s in state.segs.items():
        if name in ("gdtr", "idtr"):
            segs[name] = Segment(0, 0, s.limit & 0xFFFF, s.base)
            continue
        attrib = s.attrib & 0x0FFF
        present = bool(attrib & 0x80)
        # QEMU set_seg: unusable = !present; svm_set_segment: P = present && !unusable.
        segs[name] = Segment(s.selector, attrib if present else attrib & ~0x80, s.limit, s.base)
    out["cpl"] = (segs["ss"].attrib >> 5) & 3
    out["efer"] = regs["efer"] | EFER_SVME
    cr0 = regs["cr0"]
    if host.cd_nw_quirk:
        cr0 &= ~(CR0_CD | CR0_NW)
    out["cr0"] = cr0
    out["cr3"] = regs["cr3"]
    out["cr4"] = regs["cr4"] | (CR4_MCE if host.host_cr4_mce else 0)
    out["dr6"] = regs["dr6"]
    out["dr7"] = regs["dr7"]
    out["rflags"] = regs["rflags"] | RFLAGS_FIXED
    out["rip"] = regs["rip"]
    for name in GPRS:
        out[name] = regs[name]
    out["g_pat"] = regs["g_pat"]
    out["xcr0"] = regs["xcr0"]
    out["sev_features"] = sev_features
    if snp or host.syncs_fpu:
        out["x87_fcw"] = regs["x87_fcw"]
        out["mxcsr"] = regs["mxcsr"]
    return write_vmsa(segs, out)


def reset_vmsa(host: HostProfile, sev_features: int, *, snp: bool = False) -> bytes:
    """The measured VMSA of a vCPU that has no IGVM VP context."""
    return kvm_vmsa(qemu_reset_state(host.cpu_sig), host, sev_features, snp=snp)


def context_vmsa(vmsa: bytes, host: HostProfile, sev_features: int, *, snp: bool = False) -> bytes:
    """The measured VMSA of a vCPU whose state comes from an IGVM VP context."""
    return kvm_vmsa(qemu_cpu_state(vmsa, host.cpu_sig), host, sev_features, snp=snp)


#: sizeof(struct sev_es_save_area) in QEMU (target/i386/sev.h): QEMU copies and
#: checks only these bytes of the IGVM VMSA; the rest of the page is ignored.
QEMU_SAVE_AREA_SIZE = 0x670


def unsupported_fields(vmsa: bytes) -> list[str]:
    """Names of non-zero fields QEMU does not synchronise (check_vmsa_supported)."""
    page = bytearray(vmsa[:QEMU_SAVE_AREA_SIZE].ljust(QEMU_SAVE_AREA_SIZE, b"\0"))
    covered = bytearray(VMSA_SIZE)
    for off in SEGMENT_OFFSET.values():
        covered[off:off + 16] = b"\1" * 16
    for name in QEMU_SUPPORTED_FIELDS:
        off, fmt = FIELDS[name]
        covered[off:off + struct.calcsize(fmt)] = b"\1" * struct.calcsize(fmt)
    bad: list[str] = []
    for i in range(QEMU_SAVE_AREA_SIZE):
        if page[i] and not covered[i]:
            # name the field containing byte i when we know it
            label = next((n for n, (off, fmt) in FIELDS.items()
                          if off <= i < off + struct.calcsize(fmt)), f"byte {i:#x}")
            if label not in bad:
                bad.append(label)
    return bad


def diff_vmsa(expected: bytes, observed: bytes) -> list[tuple[str, int, int]]:
    """Field-by-field differences (name, expected, observed) between two VMSA pages."""
    es, er = read_fields(expected)
    os_, or_ = read_fields(observed)
    out: list[tuple[str, int, int]] = []
    for name in SEGMENTS:
        for attr in ("selector", "attrib", "limit", "base"):
            a, b = getattr(es[name], attr), getattr(os_[name], attr)
            if a != b:
                out.append((f"{name}.{attr}", a, b))
    for name in FIELDS:
        if er[name] != or_[name]:
            out.append((name, er[name], or_[name]))
    covered = set()
    for off in SEGMENT_OFFSET.values():
        covered.update(range(off, off + 16))
    for off, fmt in FIELDS.values():
        covered.update(range(off, off + struct.calcsize(fmt)))
    for i in range(min(len(expected), len(observed))):
        if i not in covered and expected[i] != observed[i]:
            out.append((f"byte[{i:#x}]", expected[i], observed[i]))
    return out


__all__ = [
    "CpuState", "HostProfile", "KernelProfile", "KERNEL_PROFILES", "QEMU_CPU_MODELS", "Segment",
    "VmType", "context_vmsa", "cpu_signature", "diff_vmsa", "kvm_vmsa", "qemu_cpu_state",
    "qemu_reset_state", "read_fields", "reset_vmsa", "unsupported_fields", "vm_sev_features",
    "write_vmsa", "replace",
]
