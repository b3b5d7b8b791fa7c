"""Facts the GHCB model answers by: the GHCB protocol, the SEV-ES/SNP CPU
rules and what KVM intercepts, as data with their sources.

Sources, cited by section *title* (AMD renumbers sections between
revisions; the titles are stable):

* GHCB -- AMD pub. 56421 "SEV-ES Guest-Hypervisor Communication Block
  Standardization", rev. 2.03;
* APM -- AMD64 Architecture Programmer's Manual vol. 2 (System Programming),
  chapter 15 "Secure Virtual Machine";
* KVM -- Linux arch/x86/kvm/svm/sev.c (sev_handle_vmgexit,
  sev_handle_vmgexit_msr_protocol, sev_es_validate_vmgexit,
  sev_es_init_vmcb, sev_es_recalc_msr_intercepts, sev_guest_init);
* QEMU -- QEMU 10.2 target/i386/cpu.c (cpu_x86_cpuid 0x8000001F),
  system/ioport.c (unassigned_io_read).
"""

from __future__ import annotations

from enum import IntEnum

# ------------------------------------------------------------------ MSRs
GHCB_MSR = 0xC001_0130          # GHCB "GHCB MSR" (MSR_AMD64_SEV_ES_GHCB)
SEV_STATUS_MSR = 0xC001_0131    # APM "SEV_STATUS MSR": bit 0 SEV, 1 SEV-ES, 2 SNP
EFER_MSR = 0xC000_0080
PAT_MSR = 0x0000_0277
SEV_STATUS_SEV, SEV_STATUS_ES, SEV_STATUS_SNP = 1 << 0, 1 << 1, 1 << 2

#: MSRs a guest reads and writes without an exit under SEV-ES: the GHCB
#: MSR, EFER and PAT are context-switched by hardware and KVM clears their
#: intercepts (KVM sev_es_recalc_msr_intercepts); SEV_STATUS is answered by
#: the CPU itself (OVMF's ResetVector CheckSevFeatures and Linux sme_enable
#: read it with RDMSR before any #VC handler could serve an MSR exit).
#: Every other MSR access is intercepted: #VC with SVM_EXIT_MSR.
UNINTERCEPTED_MSRS = frozenset({GHCB_MSR, EFER_MSR, PAT_MSR, SEV_STATUS_MSR})

EFER_LME, EFER_LMA, EFER_SVME = 1 << 8, 1 << 10, 1 << 12

# --------------------------------------------------- GHCB MSR protocol
GHCB_INFO_MASK = 0xFFF          # GHCB "GHCB MSR Protocol": GHCBData[11:0]


class MsrCode(IntEnum):
    """GHCBData[11:0] values (GHCB "GHCB MSR Protocol")."""

    SEV_INFO_RESP = 0x001
    SEV_INFO_REQ = 0x002
    CPUID_REQ = 0x004
    CPUID_RESP = 0x005
    AP_RESET_HOLD_REQ = 0x006
    AP_RESET_HOLD_RESP = 0x007
    PREF_GPA_REQ = 0x010
    PREF_GPA_RESP = 0x011
    REG_GPA_REQ = 0x012
    REG_GPA_RESP = 0x013
    PSC_REQ = 0x014
    PSC_RESP = 0x015
    HV_FEATURES_REQ = 0x080
    HV_FEATURES_RESP = 0x081
    TERM_REQ = 0x100


#: Section title of each MSR-protocol request (for messages).
MSR_SECTIONS = {
    MsrCode.SEV_INFO_REQ: "SEV Information",
    MsrCode.CPUID_REQ: "CPUID Request",
    MsrCode.AP_RESET_HOLD_REQ: "AP Reset Hold",
    MsrCode.PREF_GPA_REQ: "Preferred GHCB GPA Request",
    MsrCode.REG_GPA_REQ: "GHCB GPA Registration",
    MsrCode.PSC_REQ: "SNP Page State Change",
    MsrCode.HV_FEATURES_REQ: "Hypervisor Feature Support",
    MsrCode.TERM_REQ: "Termination Request",
}

#: MSR-protocol requests KVM honours only for SNP guests; for an SEV-ES guest
#: it ends the VM as for a termination request (KVM: "goto out_terminate").
SNP_ONLY_MSR_REQUESTS = frozenset({MsrCode.PREF_GPA_REQ, MsrCode.REG_GPA_REQ, MsrCode.PSC_REQ})

#: GHCB "SEV Information": GHCBData[63:48] max, [47:32] min protocol
#: version, [31:24] C-bit position.  KVM answers min 1 and max 2, except for
#: VMs created with the legacy KVM_SEV_ES_INIT, which stay at version 1
#: (KVM sev_guest_init: "only ever support the minimal GHCB protocol").
GHCB_VERSION_MIN = 1
GHCB_VERSION_MAX = 2

#: GHCB "GHCB GPA Registration": the GFN answered when the hypervisor
#: cannot use the guest's choice.
REG_GPA_REFUSED = (1 << 52) - 1
#: GHCB "SNP Page State Change": GHCBData[55:52] operation.
PSC_OP_PRIVATE, PSC_OP_SHARED = 1, 2

#: GHCB "Termination Request": reason code set 0 ("GHCB general").
TERM_REASONS_SET0 = {0: "general termination request",
                     1: "SEV-ES / GHCB protocol range is not supported",
                     2: "SEV-SNP features not supported"}

# ----------------------------------------------------------- GHCB page
#: Offsets in the GHCB page (GHCB "GHCB Layout"; the save-area part uses
#: the VMSA offsets of APM table "VMSA Layout, State Save Area for SEV-ES").
GHCB_FIELDS: dict[str, tuple[int, int]] = {
    "cpl": (0x0CB, 1), "xss": (0x140, 8), "dr7": (0x160, 8), "rax": (0x1F8, 8),
    "rcx": (0x308, 8), "rdx": (0x310, 8), "rbx": (0x318, 8),
    "sw_exit_code": (0x390, 8), "sw_exit_info_1": (0x398, 8), "sw_exit_info_2": (0x3A0, 8),
    "sw_scratch": (0x3A8, 8), "xcr0": (0x3E8, 8),
}
GHCB_VALID_BITMAP = 0x3F0        # 16 bytes: bit n = the qword at offset 8n is valid
GHCB_SHARED_BUFFER = 0x800       # .. 0xFF0
GHCB_SHARED_BUFFER_END = 0xFF0
GHCB_PROTOCOL_VERSION = 0xFFA    # u16
GHCB_USAGE = 0xFFC               # u32; 0 = the standard layout
GHCB_PAGE = 0x1000

#: SW_EXITINFO1[31:0] of a response (GHCB "GHCB Protocol": hypervisor response).
RESP_OK, RESP_ISSUE_EXCEPTION, RESP_MALFORMED = 0, 1, 2


class GhcbError(IntEnum):
    """SW_EXITINFO2 with RESP_MALFORMED (GHCB "Invalid Input"; Linux
    arch/x86/include/asm/sev-common.h GHCB_ERR_*)."""

    NOT_REGISTERED = 1
    INVALID_USAGE = 2
    INVALID_SCRATCH_AREA = 3
    MISSING_INPUT = 4
    INVALID_INPUT = 5
    INVALID_EVENT = 6


# ------------------------------------------------------------- exit codes
class Exit(IntEnum):
    """SW_EXITCODE / #VC error codes: SVM exit codes (APM appendix C) and
    the VMGEXIT software events (GHCB "Invoking VMGEXIT")."""

    READ_DR7 = 0x27
    WRITE_DR7 = 0x37
    RDTSC = 0x6E
    RDPMC = 0x6F
    CPUID = 0x72
    INVD = 0x76
    HLT = 0x78
    IOIO = 0x7B
    MSR = 0x7C
    VMMCALL = 0x81
    RDTSCP = 0x87
    WBINVD = 0x89
    MONITOR = 0x8A
    MWAIT = 0x8B
    EFER_WRITE_TRAP = 0x8F
    CR0_WRITE_TRAP = 0x90
    CR4_WRITE_TRAP = 0x94
    CR8_WRITE_TRAP = 0x98
    NPF = 0x400
    VMGEXIT = 0x403
    PAGE_NOT_VALIDATED = 0x404
    MMIO_READ = 0x8000_0001
    MMIO_WRITE = 0x8000_0002
    NMI_COMPLETE = 0x8000_0003
    AP_HLT_LOOP = 0x8000_0004
    AP_JUMP_TABLE = 0x8000_0005
    PSC = 0x8000_0010
    GUEST_REQUEST = 0x8000_0011
    EXT_GUEST_REQUEST = 0x8000_0012
    AP_CREATION = 0x8000_0013
    HV_FEATURES = 0x8000_FFFD
    TERM_REQUEST = 0x8000_FFFE
    UNSUPPORTED_EVENT = 0x8000_FFFF
    INVALID = (1 << 64) - 1      # VMEXIT_INVALID (-1): VMRUN consistency check failed


def exit_name(code: int) -> str:
    try:
        return f"{code:#x} ({Exit(code).name})"
    except ValueError:
        return f"{code:#x}"


#: Section of the GHCB specification that governs each full-GHCB exit.
EXIT_SECTIONS = {
    Exit.CPUID: "CPUID", Exit.IOIO: "IOIO", Exit.MSR: "MSR", Exit.VMMCALL: "VMMCALL",
    Exit.MMIO_READ: "MMIO Access", Exit.MMIO_WRITE: "MMIO Access",
    Exit.PSC: "Page State Change", Exit.TERM_REQUEST: "Termination Request",
    Exit.HV_FEATURES: "Hypervisor Feature Support",
}

#: What each full-GHCB exit needs in the valid bitmap besides SW_EXITCODE,
#: SW_EXITINFO1 and SW_EXITINFO2 (KVM sev_es_validate_vmgexit; the GHCB
#: specification lists the same inputs per event).  A callable gets
#: (exit_info_1) and returns the field names required.
EXIT_INPUTS = {
    Exit.CPUID: lambda info1: ("rax", "rcx"),
    Exit.IOIO: lambda info1: (("sw_scratch",) if info1 & IOIO_STR
                              else (() if info1 & IOIO_TYPE_IN else ("rax",))),
    Exit.MSR: lambda info1: ("rcx", "rax", "rdx") if info1 else ("rcx",),
    Exit.VMMCALL: lambda info1: ("rax", "cpl"),
    Exit.MMIO_READ: lambda info1: ("sw_scratch",),
    Exit.MMIO_WRITE: lambda info1: ("sw_scratch",),
    Exit.PSC: lambda info1: ("sw_scratch",),
    Exit.READ_DR7: lambda info1: (), Exit.WRITE_DR7: lambda info1: ("rax",),
    Exit.RDTSC: lambda info1: (), Exit.RDTSCP: lambda info1: (), Exit.WBINVD: lambda info1: (),
    Exit.INVD: lambda info1: (),
    Exit.NMI_COMPLETE: lambda info1: (), Exit.AP_HLT_LOOP: lambda info1: (),
    Exit.AP_JUMP_TABLE: lambda info1: (), Exit.HV_FEATURES: lambda info1: (),
    Exit.TERM_REQUEST: lambda info1: (), Exit.UNSUPPORTED_EVENT: lambda info1: (),
}
SNP_ONLY_EXITS = frozenset({Exit.PSC, Exit.AP_CREATION, Exit.GUEST_REQUEST,
                            Exit.EXT_GUEST_REQUEST})

# IOIO EXITINFO1 (APM "IOIO Intercept Information").
IOIO_TYPE_IN = 1 << 0
IOIO_STR = 1 << 2
IOIO_REP = 1 << 3
IOIO_SZ8, IOIO_SZ16, IOIO_SZ32 = 1 << 4, 1 << 5, 1 << 6
IOIO_A16, IOIO_A32, IOIO_A64 = 1 << 7, 1 << 8, 1 << 9

#: GHCB "MMIO Access" (version 2): at most 8 bytes per request.
MMIO_MAX = 8

# SNP Page State Change buffer (GHCB "Page State Change"): header
# cur_entry u16, end_entry u16, reserved u32; entries u64 of
# [11:0] cur_page, [51:12] GFN, [55:52] operation, [56] 2 MiB page.
PSC_HEADER = 8
PSC_ENTRY = 8
#: SW_EXITINFO2 of a PSC answer (Linux sev-common.h VMGEXIT_PSC_ERROR_*).
PSC_ERROR_GENERIC = 0x100 << 32
PSC_ERROR_INVALID_HDR = (1 << 32) | 1
PSC_ERROR_INVALID_ENTRY = (1 << 32) | 2

# ------------------------------------------------------------------- #VC
VC_VECTOR = 29                   # APM "#VC -- VMM Communication Exception"

#: Instructions KVM intercepts as non-automatic exits under SEV-ES, i.e.
#: that raise #VC with this error code (KVM sev_es_init_vmcb leaves these
#: intercepts set; CR reads/writes, XSETBV, EFER/PAT/GHCB MSRs are not
#: intercepted, CR0/CR4/CR8/EFER writes are trap-type automatic exits).
#: Keyed by opcode bytes after the legacy/REX prefixes.
VC_OPCODES: dict[bytes, Exit] = {
    b"\x0f\xa2": Exit.CPUID,
    b"\x0f\x09": Exit.WBINVD,
    b"\x0f\x08": Exit.INVD,
    b"\x0f\x33": Exit.RDPMC,
    b"\x0f\x01\xd9": Exit.VMMCALL,          # without REP: VMMCALL; with F3: VMGEXIT
    b"\x0f\x01\xc8": Exit.MONITOR,
    b"\x0f\x01\xc9": Exit.MWAIT,
}
IO_OPCODES = frozenset({0xE4, 0xE5, 0xE6, 0xE7, 0xEC, 0xED, 0xEE, 0xEF, 0x6C, 0x6D, 0x6E, 0x6F})

#: VMRUN guest-state consistency checks that a guest of an encrypted VMSA
#: can break on its own (APM "Canonicalization and Consistency Checks"):
#: a failing check ends the VM with VMEXIT_INVALID at the next VMRUN.
CR0_CD, CR0_NW = 1 << 30, 1 << 29

# ------------------------------------------------------------ hypervisor
#: CPUID 0x8000001F EAX bits QEMU reports (QEMU cpu_x86_cpuid): SEV 0x2,
#: SEV-ES 0x8, SEV-SNP 0x10; EBX[5:0] C-bit, EBX[11:6] reduced phys bits.
CPUID_SEV, CPUID_SEV_ES, CPUID_SEV_SNP = 0x2, 0x8, 0x10
#: QEMU system/ioport.c unassigned_io_read: reads of an unassigned port.
UNASSIGNED_IO = 0xFFFF_FFFF
