"""The encrypted vCPU around unicorn: its start state from the measured
VMSA, the SEV page walk (C-bit), and exception delivery through the
guest's IDT.

unicorn executes the instructions; what it cannot know is SEV's: which
accesses are private, and that hardware raises #VC.  Three things are done
here, each an architectural rule rather than an instruction semantic:

* **Start state.**  The model starts from the VMSA the launch measured
  (harness.measure: the IGVM VP context after QEMU and KVM, or KVM's reset
  state), i.e. from what the hardware decrypts into the vCPU.  unicorn has
  no call for hidden segment state, so each segment's cache (selector,
  base, limit, attributes) is loaded by the CPU itself from a descriptor
  the model writes into a scratch GDT (``mov %ax, %ds`` / ``lretq``), and
  the selector is then set to the VMSA's.
* **Page walk.**  unicorn runs with a virtual TLB whose fill is ours: the
  guest's page tables are walked here (4-level long mode, PAE, or paging
  off), the C-bit is taken out of every address and decides the view of
  the data page.  Instruction fetches, page-table reads and every access
  with paging off are private (APM "SEV: Supported Operating Modes" /
  "Page Table Support").
* **Delivery.**  #VC (vector 29, error code = the exit code) and the faults
  the model raises are delivered through the guest's IDT as the CPU does
  it (APM "Long-Mode Interrupt Control Transfers", "Exception and
  Interrupt Handling"): no usable gate means a shutdown (triple fault).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from unicorn import (UC_MEM_FETCH, UC_MEM_WRITE, UC_PROT_EXEC, UC_PROT_READ, UC_PROT_WRITE,
                     UcError)
from unicorn import x86_const as X

from harness.ghcb.memory import PAGE, SCRATCH_BASE, SHARED_BASE, GuestMemory, ModelError
from harness.ghcb.spec import EFER_LMA, EFER_LME, EFER_MSR, Exit

CR0_PE, CR0_PG = 1 << 0, 1 << 31
CR4_PAE, CR4_LA57 = 1 << 5, 1 << 12
RFLAGS_TF, RFLAGS_IF, RFLAGS_NT, RFLAGS_RF, RFLAGS_VM = 1 << 8, 1 << 9, 1 << 14, 1 << 16, 1 << 17
PTE_P, PTE_PS = 1 << 0, 1 << 7
ADDR_MASK = 0x000F_FFFF_FFFF_F000

GPRS = {"rax": X.UC_X86_REG_RAX, "rcx": X.UC_X86_REG_RCX, "rdx": X.UC_X86_REG_RDX,
        "rbx": X.UC_X86_REG_RBX, "rsp": X.UC_X86_REG_RSP, "rbp": X.UC_X86_REG_RBP,
        "rsi": X.UC_X86_REG_RSI, "rdi": X.UC_X86_REG_RDI, "r8": X.UC_X86_REG_R8,
        "r9": X.UC_X86_REG_R9, "r10": X.UC_X86_REG_R10, "r11": X.UC_X86_REG_R11,
        "r12": X.UC_X86_REG_R12, "r13": X.UC_X86_REG_R13, "r14": X.UC_X86_REG_R14,
        "r15": X.UC_X86_REG_R15}
SEGS = {"es": X.UC_X86_REG_ES, "cs": X.UC_X86_REG_CS, "ss": X.UC_X86_REG_SS,
        "ds": X.UC_X86_REG_DS, "fs": X.UC_X86_REG_FS, "gs": X.UC_X86_REG_GS}
#: ``mov %ax, %<seg>`` (8E /r with the segment in ModRM.reg).
_MOV_TO_SEG = {"es": b"\x8e\xc0", "ss": b"\x8e\xd0", "ds": b"\x8e\xd8"}

# Scratch area (outside guest memory): GDT, trampoline code, stack.
_SCR_GDT = SCRATCH_BASE
_SCR_CODE = SCRATCH_BASE + 0x10000
_SCR_STACK = SCRATCH_BASE + 0x1F000
#: Linear addresses through which the CPU reaches the scratch area while
#: the model loads state (the TLB fill maps them; the TLB is flushed after).
_LIN_GDT, _LIN_CODE, _LIN_STACK = 0x7FFF_0000, 0x7FFE_0000, 0x7FFD_F000


class Fault(Exception):
    """A fault the model raises for the guest (delivered through the IDT)."""

    def __init__(self, vector: int, error: int | None, why: str, cr2: int | None = None) -> None:
        super().__init__(why)
        self.vector, self.error, self.why, self.cr2 = vector, error, why, cr2


class Shutdown(Exception):
    """The vCPU cannot continue: triple fault, or a VMRUN that fails."""


@dataclass
class Translation:
    gpa: int
    private: bool


def seg_flags(attrib: int) -> int:
    """VMSA 12-bit attributes -> the high dword of a descriptor (the QEMU
    segment-cache flags): type/S/DPL/P to bits 8-15, AVL/L/D/G to 20-23."""
    return ((attrib & 0xFF) << 8) | ((attrib & 0xF00) << 12)


def descriptor(base: int, limit: int, attrib: int) -> bytes:
    """An 8-byte code/data descriptor with this base, limit, attributes; a
    page-granular limit is expressed in 4 KiB units as the CPU expands it."""
    flags = seg_flags(attrib)
    lim = limit >> 12 if flags & (1 << 23) else limit
    lo = (lim & 0xFFFF) | ((base & 0xFFFF) << 16)
    hi = ((base >> 16) & 0xFF) | (flags & 0x00F0FF00) | (lim & 0xF0000) | (base & 0xFF000000)
    return struct.pack("<II", lo, hi)


class Cpu:
    """One vCPU of an SEV-ES / SEV-SNP guest on a unicorn engine."""

    def __init__(self, uc, memory: GuestMemory, cbit: int) -> None:
        self.uc = uc
        self.mem = memory
        self.cbit = cbit
        self.cmask = 1 << cbit
        self.setup = False
        self.pending: Fault | None = None
        #: Architectural EFER (unicorn keeps only the bits TCG implements:
        #: SVME, which an SEV-ES guest's EFER always has, is not among them).
        self.efer = 0
        self._tramp64 = True     # unicorn starts with a 64-bit code segment

    # ------------------------------------------------------- registers
    def reg(self, name: str) -> int:
        return self.uc.reg_read(GPRS[name])

    def set_reg(self, name: str, value: int) -> None:
        self.uc.reg_write(GPRS[name], value & (1 << 64) - 1)

    @property
    def rip(self) -> int:
        return self.uc.reg_read(X.UC_X86_REG_RIP)

    @rip.setter
    def rip(self, value: int) -> None:
        self.uc.reg_write(X.UC_X86_REG_RIP, value)

    def cr(self, n: int) -> int:
        return self.uc.reg_read({0: X.UC_X86_REG_CR0, 2: X.UC_X86_REG_CR2, 3: X.UC_X86_REG_CR3,
                                 4: X.UC_X86_REG_CR4}[n])

    def efer_now(self) -> int:
        """EFER as the guest reads it: the architectural value with LMA as
        the CPU set it on the last paging switch."""
        lma = self.uc.msr_read(EFER_MSR) & EFER_LMA
        return (self.efer & ~EFER_LMA) | lma

    def write_efer(self, value: int) -> None:
        self.efer = value
        self.uc.msr_write(EFER_MSR, value & ~EFER_LMA)

    @property
    def long_mode(self) -> bool:
        return bool(self.uc.msr_read(EFER_MSR) & EFER_LMA)

    # ------------------------------------------------------ start state
    def load_vmsa(self, segs: dict, regs: dict) -> None:
        """Set the vCPU to a VMSA's state (harness.measure.kvm_vmsa.read_fields)."""
        uc = self.uc
        self.setup = True
        try:
            uc.reg_write(X.UC_X86_REG_GDTR, (0, _LIN_GDT, 0xFFFF, 0))
            protected = bool(regs["cr0"] & CR0_PE)
            if protected:                  # the mode first: CS's cache sets the code size
                self._enter_mode(regs)
            # Segment caches through scratch selectors 0x08.., CS last.
            for i, name in enumerate(("ss", "ds", "es", "fs", "gs", "cs"), start=1):
                s = segs[name]
                self._load_cache(name, i * 8, s.base, s.limit, s.attrib)
            if not protected:              # real mode keeps the caches loaded before
                self._enter_mode(regs)
            # selectors as the VMSA has them (unicorn writes only the selector
            # of CS/SS/DS/ES in 64-bit mode; FS/GS bases are set directly)
            for name in ("cs", "ss", "ds", "es"):
                uc.reg_write(SEGS[name], segs[name].selector)
            for name, reg in (("fs", X.UC_X86_REG_FS_BASE), ("gs", X.UC_X86_REG_GS_BASE)):
                uc.reg_write(reg, segs[name].base)
            for name in ("gdtr", "idtr"):
                s = segs[name]
                uc.reg_write(X.UC_X86_REG_GDTR if name == "gdtr" else X.UC_X86_REG_IDTR,
                             (0, s.base, s.limit & 0xFFFF, 0))
            for name, reg in (("ldtr", X.UC_X86_REG_LDTR), ("tr", X.UC_X86_REG_TR)):
                s = segs[name]
                uc.reg_write(reg, (s.selector, s.base, s.limit, seg_flags(s.attrib)))
            for name in GPRS:
                self.set_reg(name, regs[name])
            uc.reg_write(X.UC_X86_REG_RFLAGS, regs["rflags"])
            uc.reg_write(X.UC_X86_REG_CR2, regs.get("cr2", 0))
            self.rip = regs["rip"]
        except UcError as exc:
            raise ModelError(f"unicorn refused the VMSA state: {exc}") from None
        finally:
            self.setup = False
            self.flush_tlb()

    def _enter_mode(self, regs: dict) -> None:
        """Paging and operating mode of the VMSA.  unicorn starts in long
        mode; leaving it (CR0.PG off with EFER.LMA) and entering the VMSA's
        lets the CPU derive EFER.LMA from CR0.PG and EFER.LME itself."""
        uc = self.uc
        self._tramp64 = False    # leaving long mode made unicorn's start CS 32-bit
        uc.msr_write(EFER_MSR, EFER_LME)
        uc.reg_write(X.UC_X86_REG_CR4, CR4_PAE)
        uc.reg_write(X.UC_X86_REG_CR0, CR0_PE | CR0_PG)
        uc.reg_write(X.UC_X86_REG_CR0, CR0_PE)
        efer = regs["efer"]
        self.write_efer(efer & ~EFER_LMA)
        uc.reg_write(X.UC_X86_REG_CR3, regs["cr3"])
        uc.reg_write(X.UC_X86_REG_CR4, regs["cr4"])
        uc.reg_write(X.UC_X86_REG_CR0, regs["cr0"])
        if bool(efer & EFER_LMA) != self.long_mode:
            raise ModelError(f"VMSA EFER {efer:#x} with CR0 {regs['cr0']:#x} / CR4 "
                             f"{regs['cr4']:#x}: the CPU would not be in that mode")
        self.efer = efer

    def _load_cache(self, name: str, sel: int, base: int, limit: int, attrib: int) -> None:
        uc = self.uc
        uc.mem_write(_SCR_GDT + sel, descriptor(base, limit, attrib))
        if not attrib & 0x80:
            return  # not present: the selector write alone (a null segment)
        if name in ("fs", "gs"):
            uc.reg_write(SEGS[name], sel)
            return
        # Each load runs at its own offset with the translation cache
        # flushed (the CPU must run the bytes just written), and stops on an
        # address ("until"), not an instruction count: unicorn's counting
        # hook would linger into the guest's run.
        off = 0x40 * (sel >> 3)
        begin = _LIN_CODE + off
        if name == "cs":
            # far return: pops RIP, then CS -- loads CS from the scratch GDT
            # (lretq in 64-bit code, lret with 32-bit pops otherwise); it
            # "returns" to the address where the run stops.
            if attrib & 0x200 and self.long_mode:
                until, ret = begin + 0x20, begin + 0x20
            else:
                ret = 0x10
                until = (base + ret) & 0xFFFF_FFFF
            if self._tramp64:
                uc.mem_write(_SCR_STACK, struct.pack("<QQ", ret, sel))
                code = b"\x48\xcb"
            else:
                uc.mem_write(_SCR_STACK, struct.pack("<II", ret, sel))
                code = b"\xcb"
        else:
            uc.reg_write(X.UC_X86_REG_RAX, sel)
            code = _MOV_TO_SEG[name]
            until = begin + len(code)
        uc.reg_write(X.UC_X86_REG_RSP, _LIN_STACK)
        uc.mem_write(_SCR_CODE + off, code)
        uc.ctl_flush_tb()
        uc.emu_start(begin, until)

    def flush_tlb(self) -> None:
        from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH
        self.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)

    # -------------------------------------------------------- page walk
    def translate(self, linear: int, write: bool = False, fetch: bool = False) -> Translation:
        """Linear -> guest-physical address and view, or :class:`Fault`."""
        cr0 = self.cr(0)
        if not cr0 & CR0_PG:
            return Translation(linear & 0xFFFF_FFFF, True)
        cr4 = self.cr(4)
        if not cr4 & CR4_PAE:
            raise ModelError("32-bit paging without PAE has no C-bit (every access shared); "
                             "the model walks only PAE and long-mode page tables")
        if cr4 & CR4_LA57:
            raise ModelError("5-level paging (CR4.LA57) is not modelled")
        cr3 = self.cr(3)
        err = (2 if write else 0) | (0x10 if fetch else 0)
        strip = ~self.cmask & ADDR_MASK
        if self.long_mode:
            table = cr3 & strip
            levels = ((39, 0), (30, 1 << 30), (21, 1 << 21), (12, 0))
        else:
            pdpte = self._read_table(cr3 & 0xFFFF_FFE0 & ~self.cmask, (linear >> 30) & 3)
            if not pdpte & PTE_P:
                raise Fault(14, err, f"PDPTE for {linear:#x} not present", linear)
            table = pdpte & strip
            levels = ((21, 1 << 21), (12, 0))
        for shift, large in levels:
            entry = self._read_table(table, (linear >> shift) & 0x1FF)
            if not entry & PTE_P:
                raise Fault(14, err, f"page-table entry for {linear:#x} not present", linear)
            if large and entry & PTE_PS:
                base = entry & strip & ~(large - 1)
                return Translation(base | (linear & (large - 1)), bool(entry & self.cmask))
            if shift == 12:
                return Translation((entry & strip) | (linear & 0xFFF), bool(entry & self.cmask))
            table = entry & strip
        raise AssertionError("unreachable")

    def _read_table(self, table: int, index: int) -> int:
        gpa = table + index * 8
        if not self.mem.contains(gpa):
            raise Fault(14, 0x8, f"page table at {gpa:#x} outside guest RAM", None)
        if self.mem.snp and gpa // PAGE not in self.mem.validated:
            raise Fault(29, Exit.PAGE_NOT_VALIDATED,
                        f"page-table page {gpa & ~0xFFF:#x} is not validated")
        return struct.unpack("<Q", self.uc.mem_read(gpa, 8))[0]

    # ------------------------------------------------- linear accesses
    def physical(self, linear: int, write: bool) -> int:
        """The unicorn address behind a data access the model makes for the
        CPU (an exception frame, a gate): private view unless the mapping
        is shared."""
        t = self.translate(linear, write=write)
        return t.gpa if t.private else SHARED_BASE + t.gpa

    def read_linear(self, linear: int, size: int) -> bytes:
        out = b""
        while size:
            n = min(size, PAGE - (linear & 0xFFF))
            out += bytes(self.uc.mem_read(self.physical(linear, False), n))
            linear, size = linear + n, size - n
        return out

    def write_linear(self, linear: int, data: bytes) -> None:
        while data:
            n = min(len(data), PAGE - (linear & 0xFFF))
            self.uc.mem_write(self.physical(linear, True), data[:n])
            linear, data = linear + n, data[n:]

    # ------------------------------------------------------ delivery
    def deliver(self, vector: int, error: int | None, why: str) -> str:
        """Deliver an exception through the guest's IDT; return a line for
        the event log.  Raises :class:`Shutdown` when the CPU would."""
        if not self.cr(0) & CR0_PE:
            raise ModelError(f"{why}: exception delivery in real mode is not modelled")
        _, base, limit, _ = self.uc.reg_read(X.UC_X86_REG_IDTR)
        size = 16 if self.long_mode else 8
        if limit < vector * size + size - 1:
            raise Shutdown(f"{why}; IDTR limit {limit:#x} has no gate for vector {vector}: "
                           "the CPU shuts down (triple fault)")
        try:
            gate = self.read_linear(base + vector * size, size)
        except Fault as f:
            raise Shutdown(f"{why}; the IDT gate for vector {vector} is unreadable "
                           f"({f.why}): the CPU shuts down (triple fault)") from None
        lo = struct.unpack_from("<Q", gate)[0]
        offset = (lo & 0xFFFF) | ((lo >> 48) & 0xFFFF) << 16
        if size == 16:
            offset |= struct.unpack_from("<Q", gate, 8)[0] << 32 & 0xFFFF_FFFF_0000_0000
        selector, ist, gtype = (lo >> 16) & 0xFFFF, (lo >> 32) & 7, (lo >> 40) & 0xF
        if not lo >> 47 & 1 or gtype not in (0xE, 0xF):
            raise Shutdown(f"{why}; IDT gate {vector} is not a present interrupt/trap gate "
                           f"(type {gtype:#x}): the CPU shuts down (triple fault)")
        cs = self.uc.reg_read(X.UC_X86_REG_CS)
        if cs & 3:
            raise ModelError(f"{why}: delivery from CPL {cs & 3} is not modelled")
        if selector != cs:
            raise ModelError(f"{why}: gate selector {selector:#x} differs from CS {cs:#x}; "
                             "the model delivers only within the current code segment")
        rflags = self.uc.reg_read(X.UC_X86_REG_RFLAGS)
        rsp = self.reg("rsp")
        rip = self.rip
        if size == 16:
            if ist:
                _, tr_base, _, _ = self.uc.reg_read(X.UC_X86_REG_TR)
                rsp = struct.unpack("<Q", self.read_linear(tr_base + 0x24 + (ist - 1) * 8, 8))[0]
            rsp &= ~0xF
            frame = [self.uc.reg_read(X.UC_X86_REG_SS), self.reg("rsp"), rflags, cs, rip]
            width, fmt = 8, "<Q"
        else:
            frame = [rflags, cs, rip]
            width, fmt = 4, "<I"
        if error is not None:
            frame.append(error)
        try:
            for value in frame:
                rsp -= width
                self.write_linear(rsp, struct.pack(fmt, value & ((1 << 8 * width) - 1)))
        except Fault as f:
            raise Shutdown(f"{why}; pushing the exception frame faulted ({f.why}): "
                           "the CPU shuts down (triple fault)") from None
        rflags &= ~(RFLAGS_TF | RFLAGS_NT | RFLAGS_RF | RFLAGS_VM)
        if gtype == 0xE:
            rflags &= ~RFLAGS_IF
        self.set_reg("rsp", rsp)
        self.uc.reg_write(X.UC_X86_REG_RFLAGS, rflags)
        self.rip = offset
        return f"vector {vector} delivered to {selector:#x}:{offset:#x}"


def tlb_perms(access: int) -> int:
    if access == UC_MEM_FETCH:
        return UC_PROT_EXEC | UC_PROT_READ
    if access == UC_MEM_WRITE:
        return UC_PROT_READ | UC_PROT_WRITE
    return UC_PROT_READ
