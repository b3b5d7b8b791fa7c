"""One SEV-ES / SEV-SNP vCPU run: unicorn executes, the model traps.

Before every instruction (unicorn's code hook) the model looks at its
opcode only to decide what the *hardware* does with it under SEV-ES:

* ``VMGEXIT`` (F3 0F 01 D9) is an automatic exit: the hypervisor model
  answers the GHCB MSR's request, the guest resumes after it;
* RDMSR/WRMSR of the GHCB MSR, SEV_STATUS, EFER are not intercepted and are
  answered by the CPU (the GHCB MSR and the architectural EFER live here);
  any other MSR, CPUID, port I/O, VMMCALL, WBINVD, DR7 accesses are
  intercepted by KVM: the CPU raises #VC with that exit code instead of
  executing them (spec.VC_OPCODES) and the guest's #VC handler runs through
  its IDT;
* writes of CR0/CR4/EFER are trap-type automatic exits after which VMRUN
  checks the guest state (APM "Canonicalization and Consistency Checks");
* HLT is an automatic exit: with nothing to wake the vCPU, the run ends;
* PVALIDATE (SNP) validates or rescinds a page in the model's RMP.

Memory accesses go through the model's TLB fill (harness.ghcb.cpu): the
C-bit picks the view, SNP's RMP is checked, accesses outside RAM are MMIO
(#VC with SVM_EXIT_NPF, as KVM reflects reserved-bit #NPFs to SEV-ES guests).

Every run is bounded by an instruction count and a wall-clock deadline, and
ends with one status and one line saying why.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

from unicorn import (UC_ARCH_X86, UC_HOOK_CODE, UC_HOOK_INSN_INVALID, UC_HOOK_INTR,
                     UC_HOOK_TLB_FILL, UC_MEM_FETCH, UC_MEM_WRITE, UC_MODE_64, UC_TLB_VIRTUAL, Uc,
                     UcError)
from unicorn import x86_const as X

from harness.ghcb import spec as S
from harness.ghcb.cpu import (_LIN_CODE, _LIN_GDT, _LIN_STACK, _SCR_CODE, _SCR_GDT, _SCR_STACK,
                              CR0_PG, CR4_PAE, RFLAGS_IF, Cpu, Fault, Shutdown, tlb_perms)
from harness.ghcb.hypervisor import Finding, HostConfig, Hypervisor, RunEnd
from harness.ghcb.memory import PAGE, SHARED_BASE, GuestMemory, ModelError
from harness.ghcb.spec import Exit
from harness.measure.kvm_vmsa import read_fields
from harness.measure.pages import LaunchPlan

PREFIXES = frozenset({0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3})
#: Far transfers and IRET (FF only with ModRM.reg 3 or 5): the code size
#: may change.
_MODE_CHANGERS = frozenset({0xEA, 0x9A, 0xCA, 0xCB, 0xCF, 0xFF})
#: First bytes after the prefixes that may start an instruction of interest.
_INTERESTING = frozenset({0x0F, 0xF4}) | S.IO_OPCODES | _MODE_CHANGERS
_SCRATCH_PAGES = {_LIN_GDT + i * PAGE: _SCR_GDT + i * PAGE for i in range(16)}
_SCRATCH_PAGES[_LIN_CODE] = _SCR_CODE
_SCRATCH_PAGES[_LIN_STACK] = _SCR_STACK
PVALIDATE_FAIL_INPUT, PVALIDATE_FAIL_SIZEMISMATCH = 1, 6
#: The "until" address of unicorn's run: it looks the page of UNTIL - 1
#: up in the TLB on every start (to drop translations of it), so the fill
#: maps the last two pages of the address space to scratch zeros; the guest
#: itself must not use them.
UNTIL = 0xFFFF_FFFF_FFFF_F000
_RESERVED = 0xFFFF_FFFF_FFFF_E000


@dataclass
class Limits:
    instructions: int = 2_000_000
    seconds: float = 20.0


@dataclass
class RunResult:
    """What a model run observed."""

    platform: str
    status: str                   # exited, terminated, shutdown, halted, vmexit-invalid,
    reason: str                   # kvm-error, limit, timeout, model-limit
    console: bytes = b""
    instructions: int = 0
    exits: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    exit_status: int | None = None     # QEMU's exit status (isa-debug-exit)
    guest_status: int | None = None    # the value the guest ended with

    def total(self, category: str) -> int:
        """Events of one category (vmgexit, #VC, trap, ae, exception, insn)."""
        return sum(n for k, n in self.exits.items() if k.split(":")[0] == category)

    @property
    def exit_count(self) -> int:
        """Exits to the hypervisor: VMGEXITs and automatic exits (a #VC is
        an exception inside the guest; its handler's VMGEXIT is the exit)."""
        return self.total("vmgexit") + self.total("trap") + self.total("ae")

    def counts_line(self) -> str:
        msr = sum(n for k, n in self.exits.items() if k.startswith("vmgexit:msr-protocol"))
        return (f"instructions={self.instructions} exits={self.exit_count} "
                f"(VMGEXIT {self.total('vmgexit')}: MSR protocol {msr}, GHCB "
                f"{self.total('vmgexit') - msr}; automatic {self.total('trap') + self.total('ae')}) "
                f"#VC={self.total('#VC')}")


class Machine:
    """An encrypted vCPU started from a measured VMSA over a launch plan."""

    def __init__(self, launch: LaunchPlan, vmsa: bytes, host: HostConfig, ram_size: int,
                 limits: Limits | None = None, platform: str = "") -> None:
        self.platform = platform or ("sev-snp" if host.snp else "sev-es")
        self.limits = limits or Limits()
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        self.uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
        self.mem = GuestMemory.plan(launch, ram_size, host.snp)
        self.mem.map_into(self.uc)
        self.mem.load(self.uc, launch)
        self.cpu = Cpu(self.uc, self.mem, host.cbit)
        self.hv = Hypervisor(host, self.mem, self.uc)
        self.hv.log.extend(self.mem.notes)
        self.ghcb_msr = self.hv.sev_info()      # KVM sets it at vCPU reset
        self.icount = 0
        self.pending: Fault | None = None
        self.end: RunEnd | None = None
        self.fetch_map: dict[int, int] = {}
        self.code_pages: dict[int, bytes] = {}
        self.volatile: set[int] = set()
        self.bits: int | None = None
        self.trap_check = False
        self.private_content: set[int] = set() if host.snp else {
            p for u in launch.updates for p in range(u.gpa // PAGE, (u.gpa + u.length) // PAGE)
            if p not in self.mem.plaintext}
        self.warned: set[tuple[str, int]] = set()
        self._deadline = 0.0
        self.uc.hook_add(UC_HOOK_TLB_FILL, self._on_tlb)
        segs, regs = read_fields(vmsa)
        self.cpu.load_vmsa(segs, regs)
        self.cs_bits = self._bits_from_attrib(segs["cs"].attrib)
        self.cs_sel = segs["cs"].selector
        self.uc.hook_add(UC_HOOK_CODE, self._on_code)
        self.uc.hook_add(UC_HOOK_INTR, self._on_intr)
        self.uc.hook_add(UC_HOOK_INSN_INVALID, self._on_invalid)

    # ------------------------------------------------------------- run
    def run(self) -> RunResult:
        self._deadline = time.monotonic() + self.limits.seconds
        stalls = 0
        while self.end is None:
            start, before = self.cpu.rip, self.icount
            if time.monotonic() > self._deadline:
                self.end = RunEnd("timeout", f"{self.limits.seconds:g} s deadline reached at "
                                  f"{start:#x} after {self.icount} instructions")
                break
            try:
                self.uc.emu_start(start, UNTIL)
            except UcError as exc:
                if self.end is not None:
                    break
                if self.pending is not None:
                    self._deliver_pending()
                    continue
                self.end = RunEnd("model-limit", f"unicorn stopped at {self.cpu.rip:#x}: {exc}")
            except (ModelError, Shutdown) as exc:
                self.end = self._as_end(exc)
            except RunEnd as exc:
                self.end = exc
            stalls = stalls + 1 if self.icount == before else 0
            if stalls > 100 and self.end is None:
                self.end = RunEnd("model-limit", f"unicorn makes no progress at {self.cpu.rip:#x}")
        e = self.end
        return RunResult(self.platform, e.status, e.reason, bytes(self.hv.console), self.icount,
                         dict(self.hv.counts), list(self.hv.findings), list(self.hv.log),
                         e.exit_status, e.guest_status)

    def _stop(self, end: RunEnd) -> None:
        if self.end is None:
            self.end = end
        self.uc.emu_stop()

    @staticmethod
    def _as_end(exc: Exception) -> RunEnd:
        if isinstance(exc, Shutdown):
            return RunEnd("shutdown", f"{exc}; with -no-reboot QEMU exits 0 without the guest's report")
        if isinstance(exc, RunEnd):
            return exc
        return RunEnd("model-limit", str(exc))

    # ------------------------------------------------------ TLB fill
    def _on_tlb(self, uc, vaddr: int, access: int, entry, _data) -> bool:
        page = vaddr & ~0xFFF
        if self.cpu.setup:
            # the scratch GDT, code and stack; anything else (the fetch
            # after the far return that loads CS) sees a page of zeros
            entry.paddr = _SCRATCH_PAGES.get(page, _SCR_CODE + PAGE)
            entry.perms = tlb_perms(access)
            return True
        if page >= _RESERVED:
            entry.paddr, entry.perms = _SCR_CODE + PAGE, tlb_perms(access)
            return True
        fetch, write = access == UC_MEM_FETCH, access == UC_MEM_WRITE
        try:
            t = self.cpu.translate(vaddr, write=write, fetch=fetch)
        except Fault as f:
            self.pending = f
            return False
        except ModelError as exc:
            self._stop(RunEnd("model-limit", str(exc)))
            return False
        private = t.private or fetch
        gpa = t.gpa & ~0xFFF
        pg = gpa // PAGE
        if not self.mem.contains(gpa):
            self.pending = Fault(S.VC_VECTOR, Exit.NPF, f"access to {t.gpa:#x} at {vaddr:#x}, which "
                                 "is not RAM: the nested page fault of an MMIO address is reflected "
                                 "as #VC (KVM: SEV-ES relies on #NPF(RSVD) reflected as #VC)")
            return False
        if self.mem.snp:
            if private:
                if pg in self.mem.rmp_shared:
                    self.mem.rmp_shared.discard(pg)
                    self._warn("implicit-private", pg, f"private access to shared page {gpa:#x}: "
                               "QEMU converts it to private on KVM's memory fault (not validated)")
                if pg not in self.mem.validated:
                    self.pending = Fault(S.VC_VECTOR, Exit.PAGE_NOT_VALIDATED,
                                         f"private access to {gpa:#x} ({'fetch' if fetch else 'data'}"
                                         f" at {vaddr:#x}), a page not validated (PVALIDATE)")
                    return False
            elif pg not in self.mem.rmp_shared:
                self.mem.rmp_shared.add(pg)
                self.mem.validated.discard(pg)
                self._warn("implicit-shared", pg, f"shared access to private page {gpa:#x}: QEMU "
                           "converts it to shared on KVM's memory fault (an implicit page-state "
                           "change; its validation is lost)")
        else:
            if private and pg in self.mem.plaintext:
                self._warn("plaintext", pg, f"private read of {gpa:#x}, which QEMU wrote unencrypted "
                           "(UNMEASURED page): on hardware the guest reads decrypted garbage")
            if not private and not write and pg in self.private_content:
                self._warn("ciphertext", pg, f"shared read of {gpa:#x}, which holds private data: on "
                           "hardware the guest reads ciphertext")
        if write:
            self.volatile.add(entry_page := (gpa if private else SHARED_BASE + gpa))
            self.code_pages.pop(entry_page, None)
            self.mem.last_write_view[pg] = "private" if private else "shared"
            if private and not self.mem.snp:
                self.private_content.add(pg)
        entry.paddr = gpa if private else SHARED_BASE + gpa
        entry.perms = tlb_perms(access)
        if fetch:
            self.fetch_map[vaddr >> 12] = entry.paddr
        return True

    def _warn(self, kind: str, page: int, text: str) -> None:
        if (kind, page) not in self.warned:
            self.warned.add((kind, page))
            self.hv.note(text)

    # ---------------------------------------------------- exceptions
    def _deliver_pending(self) -> None:
        f, self.pending = self.pending, None
        try:
            self._deliver(f)
        except (Shutdown, ModelError) as exc:
            self.end = self._as_end(exc)

    def _deliver(self, f: Fault) -> None:
        if f.vector == S.VC_VECTOR:
            self.hv.count(f"#VC:{S.exit_name(f.error)}")
        else:
            self.hv.count(f"exception:{f.vector}")
        if f.cr2 is not None:
            self.uc.reg_write(X.UC_X86_REG_CR2, f.cr2)
        what = (f"#VC (error code {S.exit_name(f.error)}) at {self.cpu.rip:#x}: {f.why}"
                if f.vector == S.VC_VECTOR else f"exception {f.vector} at {self.cpu.rip:#x}: {f.why}")
        self.hv.note(self.cpu.deliver(f.vector, f.error, what) + f" ({what})")

    def _on_intr(self, uc, intno: int, _data) -> None:
        if self.pending is not None:
            self._deliver_pending()
        else:
            self.end = RunEnd("model-limit", f"the CPU raised exception {intno} at {self.cpu.rip:#x}; "
                              "the model delivers only #VC and the faults it raises itself")
        uc.emu_stop()

    def _on_invalid(self, uc, _data) -> bool:
        self._stop(RunEnd("shutdown", f"invalid opcode at {self.cpu.rip:#x} "
                          f"({self._insn(self.cpu.rip)[:4].hex()}): #UD is not delivered by the model"))
        return False

    # ------------------------------------------------------- code hook
    def _on_code(self, uc, addr: int, size: int, _data) -> None:
        self.icount += 1
        self.pending = None       # a fault of a fill raises at once; none outlives an instruction
        if addr >= _RESERVED:
            return self._stop(RunEnd("model-limit", f"the guest executes at {addr:#x}, in the last "
                                     "pages, which the model reserves for unicorn's stop address"))
        if self.icount > self.limits.instructions:
            return self._stop(RunEnd("limit", f"instruction limit {self.limits.instructions} reached "
                                     f"at {addr:#x} (the guest did not finish)"))
        if not self.icount & 0xFFF and time.monotonic() > self._deadline:
            return self._stop(RunEnd("timeout", f"{self.limits.seconds:g} s deadline reached at "
                                     f"{addr:#x} after {self.icount} instructions"))
        try:
            if self.trap_check:
                self.trap_check = False
                self._vmrun_checks("CR write trap")
            b = self._insn(addr)
            if not b:
                return
            act = self._classify(b)
            if act is not None:
                self._act(act, addr)
        except Fault as f:
            try:
                self._deliver(f)
            except (Shutdown, ModelError) as exc:
                self._stop(self._as_end(exc))
        except RunEnd as end:
            self._stop(end)
        except (Shutdown, ModelError) as exc:
            self._stop(self._as_end(exc))

    def _insn(self, addr: int) -> bytes:
        """Up to 15 bytes of the instruction at ``addr`` (private view).
        Pages never mapped writable are read once and kept; a page the
        guest may write (self-modifying code, data next to code) is read
        at every instruction."""
        phys = self.fetch_map.get(addr >> 12)
        if phys is None:
            return b""
        off = addr & 0xFFF
        data = self.code_pages.get(phys)
        if data is not None:
            b = data[off:off + 15]
        elif phys in self.volatile:
            b = bytes(self.uc.mem_read(phys + off, min(15, PAGE - off)))
        else:
            data = self.code_pages[phys] = bytes(self.uc.mem_read(phys, PAGE))
            b = data[off:off + 15]
        if len(b) < 15 and (addr + len(b)) >> 12 in self.fetch_map:
            b += bytes(self.uc.mem_read(self.fetch_map[(addr + len(b)) >> 12], 15 - len(b)))
        return b

    def _code_bits(self) -> int:
        """16, 32 or 64: the code size, from CR0.PE, EFER.LMA and the code
        segment's descriptor.  Cached until an instruction that can change
        it (far transfers, IRET, CR0 writes) runs."""
        if self.bits is not None:
            return self.bits
        if not self.cpu.cr(0) & 1:
            self.bits = 16
            return 16
        sel = self.uc.reg_read(X.UC_X86_REG_CS)
        if sel != self.cs_sel:           # the guest loaded CS: read its descriptor
            _, base, limit, _ = self.uc.reg_read(X.UC_X86_REG_GDTR)
            (hi,) = struct.unpack("<I", self.cpu.read_linear(base + (sel & ~7) + 4, 4))
            self.cs_sel, self.cs_bits = sel, self._bits_from_attrib(((hi >> 8) & 0xFF)
                                                                     | ((hi >> 12) & 0xF00))
        self.bits = 32 if self.cs_bits == 64 and not self.cpu.long_mode else self.cs_bits
        return self.bits

    @staticmethod
    def _bits_from_attrib(attrib: int) -> int:
        return 64 if attrib & 0x200 else 32 if attrib & 0x400 else 16

    def _classify(self, b: bytes):
        i, n = 0, len(b)
        while i < n and b[i] in PREFIXES:
            i += 1
        if i < n and 0x40 <= b[i] <= 0x4F and self._code_bits() == 64:
            i += 1
        if i >= n or b[i] not in _INTERESTING:
            return None
        prefixes, op = b[:i], b[i]
        if op in _MODE_CHANGERS:
            if op != 0xFF or (i + 1 < n and (b[i + 1] >> 3) & 7 in (3, 5)):
                self.bits = None            # far call/jmp/ret, IRET: CS may change
            return None
        if op == 0xF4:
            return ("hlt", i + 1)
        if op in S.IO_OPCODES:
            return ("vc", Exit.IOIO, i + 1)
        two = b[i + 1] if i + 1 < n else -1
        if two == 0x30:
            return ("wrmsr", i + 2)
        if two == 0x32:
            return ("rdmsr", i + 2)
        if two == 0x22 and i + 2 < n and (b[i + 2] >> 3) & 7 in (0, 4):
            self.bits = None
            return ("crwrite", i + 3)
        if two in (0x21, 0x23) and i + 2 < n and (b[i + 2] >> 3) & 7 == 7:
            return ("vc", Exit.READ_DR7 if two == 0x21 else Exit.WRITE_DR7, i + 3)
        if two == 0x01 and i + 2 < n:
            third = b[i + 2]
            if third == 0xD9:
                return ("vmgexit", i + 3) if 0xF3 in prefixes else ("vc", Exit.VMMCALL, i + 3)
            if third == 0xFF and 0xF2 in prefixes:
                return ("pvalidate", i + 3)
            if third == 0xFE and 0xF3 in prefixes:
                return ("rmpadjust", i + 3)
        code = S.VC_OPCODES.get(bytes(b[i:i + 3])) or S.VC_OPCODES.get(bytes(b[i:i + 2]))
        if code is not None:
            return ("vc", code, i + 2)
        return None

    def _act(self, act, addr: int) -> None:
        kind, length = act[0], act[-1]
        cpu = self.cpu
        if kind == "vc":
            raise Fault(S.VC_VECTOR, act[1], f"{S.exit_name(act[1])} is intercepted under SEV-ES")
        if kind == "vmgexit":
            value = self.ghcb_msr
            if value & S.GHCB_INFO_MASK:
                self.ghcb_msr = self.hv.msr_protocol(value)
            else:
                cpl = self.uc.reg_read(X.UC_X86_REG_CS) & 3
                self.hv.ghcb_exit(value, cpl)
            if self.hv.rmp_changed:      # a page-state change alters what later fills see
                self.hv.rmp_changed = False
                self.cpu.flush_tlb()
            self._vmrun_checks("VMGEXIT")
            self._skip(length)
            return
        if kind in ("rdmsr", "wrmsr"):
            msr = cpu.reg("rcx") & 0xFFFF_FFFF
            if msr not in S.UNINTERCEPTED_MSRS:
                raise Fault(S.VC_VECTOR, Exit.MSR, f"{kind.upper()} of MSR {msr:#x} is intercepted")
            if msr == S.PAT_MSR:
                return                               # unicorn implements PAT
            if kind == "rdmsr":
                value = {S.GHCB_MSR: self.ghcb_msr, S.EFER_MSR: cpu.efer_now(),
                         S.SEV_STATUS_MSR: S.SEV_STATUS_SEV | S.SEV_STATUS_ES
                         | (S.SEV_STATUS_SNP if self.mem.snp else 0)}[msr]
                cpu.set_reg("rax", value & 0xFFFF_FFFF)
                cpu.set_reg("rdx", value >> 32)
            else:
                value = (cpu.reg("rdx") & 0xFFFF_FFFF) << 32 | (cpu.reg("rax") & 0xFFFF_FFFF)
                if msr == S.SEV_STATUS_MSR:
                    raise Fault(13, 0, "WRMSR of the read-only SEV_STATUS MSR")
                if msr == S.GHCB_MSR:
                    self.ghcb_msr = value
                else:
                    cpu.write_efer(value)
                    self.hv.count(f"trap:{S.exit_name(Exit.EFER_WRITE_TRAP)}")
                    self._skip(length)
                    self._vmrun_checks(f"WRMSR EFER <- {value:#x} at {addr:#x}")
                    return
            self._skip(length)
            return
        if kind == "crwrite":
            self.hv.count("trap:CR0/CR4 write")
            self.trap_check = True
            return
        if kind == "hlt":
            self.hv.count(f"ae:{S.exit_name(Exit.HLT)}")
            ints = self.uc.reg_read(X.UC_X86_REG_RFLAGS) & RFLAGS_IF
            raise RunEnd("halted", f"HLT at {addr:#x} with interrupts "
                         f"{'enabled' if ints else 'disabled'}: nothing the model has can wake the vCPU")
        if kind == "pvalidate":
            return self._pvalidate(addr, length)
        raise RunEnd("model-limit", f"{kind.upper()} at {addr:#x} is not modelled")

    def _skip(self, length: int) -> None:
        """Resume after the instruction the model completed: RIP (not the
        linear address: CS has a base outside 64-bit mode) plus its length,
        wrapped to the code size."""
        mask = {16: 0xFFFF, 32: 0xFFFF_FFFF}.get(self._code_bits(), (1 << 64) - 1)
        self.cpu.rip = (self.cpu.rip + length) & mask

    def _pvalidate(self, addr: int, length: int) -> None:
        cpu = self.cpu
        if not self.mem.snp:
            raise RunEnd("shutdown", f"PVALIDATE at {addr:#x} in an SEV-ES guest: #UD (not SNP)")
        linear, big, validate = cpu.reg("rax"), cpu.reg("rcx") & 1, cpu.reg("rdx") & 1
        t = cpu.translate(linear)
        size = 0x20_0000 if big else PAGE
        flags = self.uc.reg_read(X.UC_X86_REG_RFLAGS) & ~1
        if t.gpa % size:
            cpu.set_reg("rax", PVALIDATE_FAIL_INPUT)
        else:
            changed = False
            for pg in range(t.gpa // PAGE, (t.gpa + size) // PAGE):
                self.mem.rmp_shared.discard(pg)
                was = pg in self.mem.validated
                (self.mem.validated.add if validate else self.mem.validated.discard)(pg)
                changed |= was != bool(validate)
            cpu.set_reg("rax", 0)
            if not changed:
                flags |= 1                         # CF: validation state unchanged
        self.hv.count("insn:PVALIDATE")
        self.uc.reg_write(X.UC_X86_REG_RFLAGS, flags)
        self.cpu.flush_tlb()
        self._skip(length)

    def _vmrun_checks(self, after: str) -> None:
        """The guest-state checks of the next VMRUN (APM "Canonicalization
        and Consistency Checks") that an encrypted guest can fail alone."""
        efer, cr0, cr4 = self.cpu.efer_now(), self.cpu.cr(0), self.cpu.cr(4)
        bad = None
        if not efer & S.EFER_SVME:
            bad = f"EFER.SVME is zero (EFER {efer:#x})"
        elif cr0 & S.CR0_NW and not cr0 & S.CR0_CD:
            bad = f"CR0.NW set with CR0.CD clear (CR0 {cr0:#x})"
        elif efer & S.EFER_LME and cr0 & CR0_PG and not cr4 & CR4_PAE:
            bad = "EFER.LME and CR0.PG set with CR4.PAE clear"
        if bad:
            raise RunEnd("vmexit-invalid", f"after {after}: {bad}; the next VMRUN fails its guest-state "
                         "consistency check with VMEXIT_INVALID (AMD APM vol. 2 \"Canonicalization and "
                         "Consistency Checks\"); KVM cannot correct an encrypted VMSA and QEMU stops "
                         "(KVM_EXIT_FAIL_ENTRY)")
