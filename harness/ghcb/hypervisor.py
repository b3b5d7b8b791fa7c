"""The hypervisor side of the GHCB protocol, answered as KVM + QEMU do.

Every VMGEXIT comes here with the GHCB MSR value: a request of the MSR
protocol (GHCB "GHCB MSR Protocol") when GHCBData[11:0] is not zero, else
the GPA of a GHCB page whose SW_EXITCODE says what the guest asks (GHCB
"Invoking VMGEXIT").  The answers follow KVM (arch/x86/kvm/svm/sev.c:
sev_handle_vmgexit_msr_protocol, sev_handle_vmgexit,
sev_es_validate_vmgexit), so a run goes on as it would on a lab host.

Where the guest breaks the specification the model also records a
*finding*: the exit code, the section it breaks and what KVM does about it.
A run with findings never counts as a pass, even when KVM would have
shrugged (KVM does not check the GHCB's protocol version, for instance).

Devices: COM1 (16550 transmit and line status), isa-debug-exit, and
unassigned ports (reads all ones, QEMU system/ioport.c); MMIO reads 0 and
writes are dropped (QEMU system/memory.c unassigned_mem_read/write).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from harness.ghcb import spec as S
from harness.ghcb.memory import PAGE, SHARED_BASE, GuestMemory
from harness.ghcb.spec import Exit, GhcbError, MsrCode

SERIAL_SPAN = 8
LSR_THRE_TEMT = 0x60       # 16550 line status: transmitter empty (hw/char/serial.c)
#: CPUID leaves the model answers besides 0x8000001F (QEMU target/i386/cpu.c
#: cpu_x86_cpuid for the default qemu64 model: max basic leaf 0xd, vendor
#: AuthenticAMD; max extended leaf raised to 0x8000001F for SEV).
VENDOR_AMD = (0x68747541, 0x444D4163, 0x69746E65)   # "Auth" "cAMD" "enti" in EBX, ECX, EDX


class RunEnd(Exception):
    """The VM stops (QEMU exits, KVM ends the VM, or the vCPU cannot go on)."""

    def __init__(self, status: str, reason: str, *, exit_status: int | None = None,
                 guest_status: int | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason
        self.exit_status, self.guest_status = exit_status, guest_status


@dataclass
class Finding:
    """A specification violation the guest committed."""

    exit_code: int
    section: str
    message: str

    def line(self) -> str:
        return f"{S.exit_name(self.exit_code)}: {self.message} [GHCB 56421 rev 2.03, \"{self.section}\"]"


@dataclass
class HostConfig:
    """What the lab host and QEMU command line decide."""

    snp: bool
    cbit: int = 51
    reduced_phys_bits: int = 1
    ghcb_max: int = S.GHCB_VERSION_MAX
    cpu_signature: int = 0x60FB1          # qemu64: family 15, model 107, stepping 1
    serial_port: int = 0x3F8
    debug_exit_port: int = 0x501
    #: Knobs for tests of the guest's side: a hypervisor whose minimum
    #: protocol version is higher, or that refuses the GHCB GPA it is offered.
    ghcb_min: int = S.GHCB_VERSION_MIN
    refuse_registration: bool = False


@dataclass
class Hypervisor:
    host: HostConfig
    mem: GuestMemory
    uc: object
    console: bytearray = field(default_factory=bytearray)
    findings: list[Finding] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    registered_gpa: int | None = None
    negotiated: bool = False
    rmp_changed: bool = False
    dr7: int = 0x400
    tsc: int = 0
    msrs: dict[int, int] = field(default_factory=dict)

    LOG_LIMIT = 200

    def note(self, line: str) -> None:
        if len(self.log) < self.LOG_LIMIT:
            self.log.append(line)

    def count(self, what: str) -> None:
        """Tally one event, ``category:detail`` (vmgexit, #VC, trap, ae,
        exception, insn)."""
        self.counts[what] = self.counts.get(what, 0) + 1

    def find(self, code: int, section: str, message: str) -> None:
        f = Finding(int(code), section, message)
        if f not in self.findings:
            self.findings.append(f)

    # ------------------------------------------------------ SEV info
    def sev_info(self) -> int:
        """GHCB "SEV Information" (also the GHCB MSR's value at vCPU reset,
        KVM sev_es_init_vmcb)."""
        return (self.host.ghcb_max << 48) | (self.host.ghcb_min << 32) \
            | (self.host.cbit << 24) | MsrCode.SEV_INFO_RESP

    def cpuid(self, fn: int, sub: int = 0) -> tuple[int, int, int, int]:
        """CPUID as QEMU answers it for the guest (eax, ebx, ecx, edx)."""
        if fn == 0:
            return (0xD, VENDOR_AMD[0], VENDOR_AMD[1], VENDOR_AMD[2])
        if fn == 1:
            return (self.host.cpu_signature, 0, 0, 0)
        if fn == 0x8000_0000:
            return (0x8000_001F, VENDOR_AMD[0], VENDOR_AMD[1], VENDOR_AMD[2])
        if fn == 0x8000_001F:
            eax = S.CPUID_SEV | S.CPUID_SEV_ES | (S.CPUID_SEV_SNP if self.host.snp else 0)
            return (eax, (self.host.cbit & 0x3F) | ((self.host.reduced_phys_bits & 0x3F) << 6), 0, 0)
        self.note(f"CPUID {fn:#x}/{sub:#x}: leaf not modelled, answered with zeros")
        return (0, 0, 0, 0)

    # --------------------------------------------------- MSR protocol
    def msr_protocol(self, value: int) -> int:
        """Answer one MSR-protocol request; returns the new GHCB MSR value."""
        code = value & S.GHCB_INFO_MASK
        try:
            req = MsrCode(code)
        except ValueError:
            req = None
        self.count(f"vmgexit:msr-protocol {req.name if req else hex(code)}")
        if req in S.SNP_ONLY_MSR_REQUESTS and not self.host.snp:
            raise RunEnd("terminated", f"MSR protocol {code:#05x} ({S.MSR_SECTIONS[req]}) is for SEV-SNP "
                         "guests only: KVM ends the SEV-ES VM (KVM_SYSTEM_EVENT_SEV_TERM; "
                         "sev_handle_vmgexit_msr_protocol)")
        if req == MsrCode.SEV_INFO_REQ:
            self.negotiated = True
            return self.sev_info()
        if req == MsrCode.CPUID_REQ:
            fn, reg = value >> 32, (value >> 30) & 3
            answer = self.cpuid(fn)[reg]
            self.note(f"MSR protocol CPUID {fn:#x} reg {reg} -> {answer:#x}")
            # the response repeats the register in [31:30] (GHCB "CPUID
            # Request"; KVM rewrites only [63:32] and [11:0] of the MSR)
            return (answer << 32) | (value & 0xFFFF_F000) | MsrCode.CPUID_RESP
        if req == MsrCode.REG_GPA_REQ:
            gfn = value >> 12
            if self.host.refuse_registration:
                self.note(f"GHCB GPA {gfn << 12:#x} refused (model knob)")
                return (S.REG_GPA_REFUSED << 12) | MsrCode.REG_GPA_RESP
            self.registered_gpa = gfn << 12
            self.note(f"GHCB GPA registered: {gfn << 12:#x}")
            return (gfn << 12) | MsrCode.REG_GPA_RESP
        if req == MsrCode.PREF_GPA_REQ:
            return (S.REG_GPA_REFUSED << 12) | MsrCode.PREF_GPA_RESP
        if req == MsrCode.PSC_REQ:
            gfn, op = (value >> 12) & ((1 << 40) - 1), (value >> 52) & 0xF
            ok = self.page_state(gfn, op, f"MSR protocol {code:#05x}")
            return MsrCode.PSC_RESP if ok else (0xFFFF_FFFF << 32) | MsrCode.PSC_RESP
        if req == MsrCode.HV_FEATURES_REQ:
            return (0x3 << 12) | MsrCode.HV_FEATURES_RESP      # SNP | SNP AP creation (KVM)
        if req == MsrCode.TERM_REQ:
            rset, rcode = (value >> 12) & 0xF, (value >> 16) & 0xFF
            meaning = S.TERM_REASONS_SET0.get(rcode, "") if rset == 0 else ""
            raise RunEnd("terminated", f"guest requested termination: reason code set {rset:#x}, "
                         f"reason code {rcode:#x}{' (' + meaning + ')' if meaning else ''} "
                         f"[GHCB MSR protocol 0x100, GHCB 56421 rev 2.03 \"Termination Request\"]",
                         guest_status=rcode)
        if req == MsrCode.AP_RESET_HOLD_REQ:
            raise RunEnd("halted", "AP reset hold request: the vCPU waits for a SIPI that a "
                         "one-vCPU model never sends")
        self.find(Exit.VMGEXIT, "GHCB MSR Protocol",
                  f"unknown MSR-protocol request {code:#05x}: KVM leaves the GHCB MSR as it is")
        return value

    def page_state(self, gfn: int, op: int, how: str) -> bool:
        gpa = gfn << 12
        if op not in (S.PSC_OP_PRIVATE, S.PSC_OP_SHARED) or not self.mem.contains(gpa):
            self.find(Exit.PSC, "SNP Page State Change",
                      f"{how}: page state change of {gpa:#x} to operation {op} refused")
            return False
        if op == S.PSC_OP_SHARED:
            if gfn in self.mem.validated:
                self.note(f"page {gpa:#x} made shared while validated (the guest did not rescind "
                          "its validation first; RMPUPDATE clears it)")
            self.mem.validated.discard(gfn)
            self.mem.rmp_shared.add(gfn)
        else:
            self.mem.rmp_shared.discard(gfn)
            self.mem.validated.discard(gfn)
        self.rmp_changed = True
        self.note(f"{how}: page {gpa:#x} -> {'shared' if op == S.PSC_OP_SHARED else 'private'}")
        return True

    # --------------------------------------------------- full GHCB
    def ghcb_exit(self, gpa: int, cpl: int) -> None:
        """Handle a VMGEXIT through the GHCB page at ``gpa``."""
        if gpa == 0:
            self.find(Exit.VMGEXIT, "Invoking VMGEXIT", "VMGEXIT with GHCB MSR 0: KVM resumes the "
                      "guest without doing anything (\"GHCB gpa is not set\")")
            return
        if not self.mem.contains(gpa):
            self.find(Exit.VMGEXIT, "Invoking VMGEXIT", f"GHCB GPA {gpa:#x} is not guest RAM: KVM "
                      "cannot map it and resumes the guest")
            return
        page = gpa // PAGE
        if self.host.snp and self.registered_gpa != gpa:
            raise RunEnd("kvm-error", f"SNP guest used GHCB {gpa:#x} without registering it "
                         f"(registered: {self.registered_gpa and hex(self.registered_gpa)}): KVM fails "
                         "KVM_RUN with EINVAL (sev_handle_vmgexit) and QEMU stops "
                         "[GHCB 56421 rev 2.03 \"GHCB GPA Registration\"]")
        if self.mem.last_write_view.get(page) == "private":
            self.find(Exit.VMGEXIT, "GHCB", f"the GHCB page {gpa:#x} was written through an "
                      "encrypted (C-bit) mapping: the hypervisor reads ciphertext, not the request")
        if self.host.snp and page not in self.mem.rmp_shared:
            self.find(Exit.VMGEXIT, "GHCB", f"the GHCB page {gpa:#x} is private in the RMP: the "
                      "hypervisor's view of it is not the guest's")
        base = SHARED_BASE + gpa
        g = GhcbView(self.uc, base)
        code = g.get("sw_exit_code")
        self.count(f"vmgexit:ghcb {S.exit_name(code)}")
        version, usage = g.u16(S.GHCB_PROTOCOL_VERSION), g.u32(S.GHCB_USAGE)
        if usage:
            self.find(code, "GHCB Layout", f"GHCB usage {usage:#x} is not the standard layout (0): "
                      "KVM answers GHCB_ERR_INVALID_USAGE")
            return g.bad(GhcbError.INVALID_USAGE)
        missing = [f for f in ("sw_exit_code", "sw_exit_info_1", "sw_exit_info_2") if not g.valid(f)]
        info1, info2 = g.get("sw_exit_info_1"), g.get("sw_exit_info_2")
        try:
            exit_ = Exit(code)
        except ValueError:
            exit_ = None
        if not missing:
            need = S.EXIT_INPUTS.get(exit_)
            if need is None:
                self.find(code, "Invoking VMGEXIT", f"exit code {S.exit_name(code)} is not an event "
                          "this hypervisor accepts: KVM answers GHCB_ERR_INVALID_EVENT")
                return g.bad(GhcbError.INVALID_EVENT)
            if exit_ in S.SNP_ONLY_EXITS and not self.host.snp:
                # KVM sev_es_validate_vmgexit: the SNP-only events fail its
                # input check for SEV-ES guests (GHCB_ERR_MISSING_INPUT)
                self.find(code, S.EXIT_SECTIONS.get(exit_, "Invoking VMGEXIT"),
                          f"{S.exit_name(code)} is an SEV-SNP event in an SEV-ES guest: KVM answers "
                          "GHCB_ERR_MISSING_INPUT")
                return g.bad(GhcbError.MISSING_INPUT)
            missing = [f for f in need(info1) if not g.valid(f)]
        if missing:
            self.find(code, S.EXIT_SECTIONS.get(exit_, "Invoking VMGEXIT"),
                      f"inputs not marked valid in the GHCB bitmap: {', '.join(missing)}: KVM answers "
                      "GHCB_ERR_MISSING_INPUT")
            return g.bad(GhcbError.MISSING_INPUT)
        if not self.host.ghcb_min <= version <= self.host.ghcb_max:
            self.find(code, "GHCB Layout", f"GHCB protocol version {version} is outside the range "
                      f"the hypervisor announced ({self.host.ghcb_min}-{self.host.ghcb_max}, SEV "
                      "Information); KVM does not check this field, other hypervisors may")
        regs = {r: g.get(r) for r in ("rax", "rbx", "rcx", "rdx")}
        g.clear_valid()
        g.set("sw_exit_info_1", S.RESP_OK)
        g.set("sw_exit_info_2", 0)
        handler = {Exit.IOIO: self._ioio, Exit.CPUID: self._cpuid, Exit.MMIO_READ: self._mmio,
                   Exit.MMIO_WRITE: self._mmio, Exit.PSC: self._psc, Exit.MSR: self._msr,
                   Exit.WBINVD: self._nothing, Exit.INVD: self._nothing,
                   Exit.READ_DR7: self._dr7, Exit.WRITE_DR7: self._dr7,
                   Exit.RDTSC: self._rdtsc, Exit.RDTSCP: self._rdtsc,
                   Exit.TERM_REQUEST: self._term, Exit.HV_FEATURES: self._features}.get(exit_)
        if handler is None:
            raise RunEnd("model-limit", f"full-GHCB exit {S.exit_name(code)} is valid but the model "
                         "does not answer it")
        handler(g, code, info1, info2, regs)
        for r in ("rax", "rbx", "rcx", "rdx"):        # KVM sev_es_sync_to_ghcb
            g.set(r, regs[r], valid=True)

    def _ioio(self, g, code, info1, info2, regs) -> None:
        port = (info1 >> 16) & 0xFFFF
        size = 1 if info1 & S.IOIO_SZ8 else 2 if info1 & S.IOIO_SZ16 else 4 if info1 & S.IOIO_SZ32 else 0
        if not size:
            return                                     # KVM: no size, nothing to do
        is_in = bool(info1 & S.IOIO_TYPE_IN)
        if info1 & S.IOIO_STR:
            count = info2
            buf = self.scratch(g, code, "IOIO", size * count)
            if buf is None:
                return
            data = bytearray(self.uc.mem_read(buf, size * count))
            for i in range(count):
                if is_in:
                    data[i * size:(i + 1) * size] = self.port_in(port, size).to_bytes(size, "little")
                else:
                    self.port_out(port, size, int.from_bytes(data[i * size:(i + 1) * size], "little"))
            if is_in:
                self.uc.mem_write(buf, bytes(data))
            return
        if is_in:
            mask = (1 << 8 * size) - 1
            regs["rax"] = (regs["rax"] & ~mask) | self.port_in(port, size)
        else:
            self.port_out(port, size, regs["rax"] & ((1 << 8 * size) - 1))

    def _cpuid(self, g, code, info1, info2, regs) -> None:
        regs["rax"], regs["rbx"], regs["rcx"], regs["rdx"] = self.cpuid(regs["rax"] & 0xFFFF_FFFF,
                                                                        regs["rcx"] & 0xFFFF_FFFF)

    def _mmio(self, g, code, info1, info2, regs) -> None:
        length = info2
        if self.host.ghcb_max >= 2 and length > S.MMIO_MAX:
            self.find(code, "MMIO Access", f"MMIO access of {length} bytes (at most {S.MMIO_MAX} in "
                      "version 2): KVM answers GHCB_ERR_INVALID_INPUT")
            return g.bad(GhcbError.INVALID_INPUT)
        buf = self.scratch(g, code, "MMIO Access", length)
        if buf is None or not length:
            return
        if code == Exit.MMIO_READ:
            self.uc.mem_write(buf, bytes(length))
            self.note(f"MMIO read {info1:#x} ({length} bytes): unassigned, reads 0")
        else:
            data = bytes(self.uc.mem_read(buf, length))
            self.note(f"MMIO write {info1:#x} <- {data.hex()}: unassigned, dropped")

    def _psc(self, g, code, info1, info2, regs) -> None:
        buf = self.scratch(g, code, "Page State Change", S.PSC_HEADER)
        if buf is None:
            return
        room = (SHARED_BASE + g.gpa + S.GHCB_SHARED_BUFFER_END - buf - S.PSC_HEADER) // S.PSC_ENTRY
        cur, end = struct.unpack("<HH", self.uc.mem_read(buf, 4))
        if end >= room or cur > end:
            self.find(code, "Page State Change", f"PSC header cur_entry {cur} end_entry {end} "
                      f"does not fit the {room} entries of the buffer")
            g.set("sw_exit_info_2", S.PSC_ERROR_INVALID_HDR)
            return
        for i in range(cur, end + 1):
            (entry,) = struct.unpack("<Q", self.uc.mem_read(buf + S.PSC_HEADER + i * S.PSC_ENTRY, 8))
            gfn, op, big = (entry >> 12) & ((1 << 40) - 1), (entry >> 52) & 0xF, (entry >> 56) & 1
            pages = 512 if big else 1
            if big and gfn % 512:
                g.set("sw_exit_info_2", S.PSC_ERROR_INVALID_ENTRY)
                return
            for p in range(gfn, gfn + pages):
                if op in (S.PSC_OP_PRIVATE, S.PSC_OP_SHARED) and not self.page_state(p, op, "PSC"):
                    g.set("sw_exit_info_2", S.PSC_ERROR_GENERIC)
                    return
            entry = (entry & ~0xFFF) | pages              # cur_page: done
            self.uc.mem_write(buf + S.PSC_HEADER + i * S.PSC_ENTRY, struct.pack("<Q", entry))
        self.uc.mem_write(buf, struct.pack("<H", end + 1))

    def _nothing(self, g, code, info1, info2, regs) -> None:
        """WBINVD, INVD: KVM completes them with nothing for the guest to see."""

    def _dr7(self, g, code, info1, info2, regs) -> None:
        if code == Exit.READ_DR7:
            regs["rax"] = self.dr7
        else:
            self.dr7 = regs["rax"]

    def _rdtsc(self, g, code, info1, info2, regs) -> None:
        """A time stamp that advances with every request (the model has no clock)."""
        self.tsc += 1000
        regs["rax"], regs["rdx"] = self.tsc & 0xFFFF_FFFF, self.tsc >> 32
        if code == Exit.RDTSCP:
            regs["rcx"] = 0                           # TSC_AUX

    def _msr(self, g, code, info1, info2, regs) -> None:
        """MSR reads and writes KVM emulates (GHCB "MSR"): the model keeps
        the written values and reads 0 for an MSR never written; it cannot
        know which MSRs KVM would refuse with #GP."""
        msr = regs["rcx"] & 0xFFFF_FFFF
        if info1:
            self.msrs[msr] = (regs["rdx"] & 0xFFFF_FFFF) << 32 | (regs["rax"] & 0xFFFF_FFFF)
            self.note(f"MSR {msr:#x} written {self.msrs[msr]:#x}")
        else:
            value = self.msrs.get(msr, 0)
            regs["rax"], regs["rdx"] = value & 0xFFFF_FFFF, value >> 32
            if msr not in self.msrs:
                self.note(f"MSR {msr:#x} read: not modelled, 0")

    def _term(self, g, code, info1, info2, regs) -> None:
        rset, rcode = info1 & 0xF, (info1 >> 4) & 0xFF
        raise RunEnd("terminated", f"guest requested termination through the GHCB: reason code set "
                     f"{rset:#x}, reason code {rcode:#x} [exit code {S.exit_name(code)}, "
                     "GHCB 56421 rev 2.03 \"Termination Request\"]", guest_status=rcode)

    def _features(self, g, code, info1, info2, regs) -> None:
        g.set("sw_exit_info_2", 0x3)

    def scratch(self, g, code: int, section: str, length: int) -> int | None:
        """The unicorn address of SW_SCRATCH, checked as KVM does
        (setup_vmgexit_scratch): version 2 keeps it inside the shared buffer."""
        gpa = g.get("sw_scratch")
        inside = g.gpa + S.GHCB_SHARED_BUFFER <= gpa and gpa + length <= g.gpa + S.GHCB_SHARED_BUFFER_END
        if not gpa or (self.host.ghcb_max >= 2 and not inside) or not self.mem.contains(gpa):
            self.find(code, section, f"SW_SCRATCH {gpa:#x} ({length} bytes) is not inside the GHCB's "
                      "shared buffer: KVM answers GHCB_ERR_INVALID_SCRATCH_AREA")
            g.bad(GhcbError.INVALID_SCRATCH_AREA)
            return None
        return SHARED_BASE + gpa

    # ----------------------------------------------------------- devices
    def port_in(self, port: int, size: int) -> int:
        base = self.host.serial_port
        if base <= port < base + SERIAL_SPAN:
            return LSR_THRE_TEMT if port == base + 5 else 0
        return S.UNASSIGNED_IO & ((1 << 8 * size) - 1)

    def port_out(self, port: int, size: int, value: int) -> None:
        base = self.host.serial_port
        if port == base:
            self.console.append(value & 0xFF)
            return
        if base < port < base + SERIAL_SPAN:
            return
        if port == self.host.debug_exit_port:
            raise RunEnd("exited", f"isa-debug-exit written with {value:#x}: QEMU exits with status "
                         f"{(value << 1) | 1} (hw/misc/debugexit.c)", exit_status=(value << 1) | 1,
                         guest_status=value)
        self.note(f"port out {port:#x} <- {value:#x}: no device, dropped")


class GhcbView:
    """Fields of a GHCB page in the shared view."""

    def __init__(self, uc, base: int) -> None:
        self.uc, self.base, self.gpa = uc, base, base - SHARED_BASE

    def get(self, name: str) -> int:
        off, size = S.GHCB_FIELDS[name]
        return int.from_bytes(self.uc.mem_read(self.base + off, size), "little")

    def set(self, name: str, value: int, valid: bool = False) -> None:
        off, size = S.GHCB_FIELDS[name]
        self.uc.mem_write(self.base + off, (value & ((1 << 8 * size) - 1)).to_bytes(size, "little"))
        if valid:
            bit = off // 8
            b = self.base + S.GHCB_VALID_BITMAP + bit // 8
            self.uc.mem_write(b, bytes([self.uc.mem_read(b, 1)[0] | 1 << bit % 8]))

    def valid(self, name: str) -> bool:
        bit = S.GHCB_FIELDS[name][0] // 8
        return bool(self.uc.mem_read(self.base + S.GHCB_VALID_BITMAP + bit // 8, 1)[0] >> (bit % 8) & 1)

    def clear_valid(self) -> None:
        self.uc.mem_write(self.base + S.GHCB_VALID_BITMAP, bytes(16))

    def u16(self, off: int) -> int:
        return int.from_bytes(self.uc.mem_read(self.base + off, 2), "little")

    def u32(self, off: int) -> int:
        return int.from_bytes(self.uc.mem_read(self.base + off, 4), "little")

    def bad(self, error: GhcbError) -> None:
        """KVM svm_vmgexit_bad_input: SW_EXITINFO1 = 2, SW_EXITINFO2 = reason."""
        self.set("sw_exit_info_1", S.RESP_MALFORMED)
        self.set("sw_exit_info_2", int(error))
