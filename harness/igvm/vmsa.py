"""VP-context structures carried by IGVM_VHS_VP_CONTEXT file data.

* :class:`SevEsVmsa`: the 4 KiB SEV-ES/SEV-SNP VMSA (save area).  Offsets
  follow AMD64 APM vol. 2, table B-4 "VMSA layout, state save area for
  SEV-ES", as also encoded by microsoft/igvm ``igvm/src/snp_defs.rs``
  (``SevVmsa``) and QEMU ``target/i386/sev.h`` (``struct
  sev_es_save_area``, which ends at 0x670).
* :class:`NativeVpContextX64`: ``IgvmNativeVpContextX64`` of igvm_defs
  (232 bytes), the context for NATIVE and SEV platforms.

Both are table-driven: ``FIELDS`` lists (name, offset, format), so the
layout is data, testable against the hand-computed offsets of the spec.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from harness.errors import HarnessError


@dataclass
class Segment:
    """``vmcb_seg`` / ``SevSelector``: 16 bytes."""

    selector: int = 0
    attrib: int = 0
    limit: int = 0
    base: int = 0

    _ST: ClassVar[struct.Struct] = struct.Struct("<HHIQ")

    def pack(self) -> bytes:
        return self._ST.pack(self.selector, self.attrib, self.limit, self.base)

    @classmethod
    def unpack(cls, buf, off: int) -> "Segment":
        return cls(*cls._ST.unpack_from(buf, off))

    def as_dict(self) -> dict:
        return {"selector": self.selector, "attrib": self.attrib, "limit": self.limit,
                "base": self.base}


class _Table:
    """Base for fixed-size little-endian structures described by FIELDS.

    A format of ``"seg"`` is a :class:`Segment`; ``"<n>s"`` is raw bytes;
    anything else a struct format of one integer.
    """

    SIZE: ClassVar[int]
    FIELDS: ClassVar[tuple[tuple[str, int, str], ...]]

    def __init__(self, **values) -> None:
        for name, _, fmt in self.FIELDS:
            if fmt == "seg":
                default = Segment()
            elif fmt.endswith("s"):
                default = bytes(int(fmt[:-1]))
            else:
                default = 0
            setattr(self, name, values.pop(name, default))
        if values:
            raise TypeError(f"unknown fields: {', '.join(sorted(values))}")

    def __init_subclass__(cls) -> None:
        # table sanity: fields sorted, non-overlapping, inside SIZE
        end = 0
        for name, off, fmt in cls.FIELDS:
            size = 16 if fmt == "seg" else struct.calcsize("<" + fmt)
            if off < end:
                raise ValueError(f"{cls.__name__}.{name} overlaps the previous field")
            end = off + size
        if end > cls.SIZE:
            raise ValueError(f"{cls.__name__} fields exceed {cls.SIZE} bytes")

    @classmethod
    def field_size(cls, name: str) -> int:
        for n, _, fmt in cls.FIELDS:
            if n == name:
                return 16 if fmt == "seg" else struct.calcsize("<" + fmt)
        raise KeyError(name)

    @classmethod
    def offset_of(cls, name: str) -> int:
        for n, off, _ in cls.FIELDS:
            if n == name:
                return off
        raise KeyError(name)

    @classmethod
    def from_bytes(cls, data) -> "_Table":
        buf = memoryview(data)
        if len(buf) < cls.SIZE:
            raise HarnessError(f"{cls.__name__}: {len(buf)} bytes, need {cls.SIZE}", exit_code=1)
        obj = cls.__new__(cls)
        for name, off, fmt in cls.FIELDS:
            if fmt == "seg":
                value = Segment.unpack(buf, off)
            else:
                (value,) = struct.unpack_from("<" + fmt, buf, off)
            setattr(obj, name, value)
        return obj

    def to_bytes(self) -> bytes:
        out = bytearray(self.SIZE)
        for name, off, fmt in self.FIELDS:
            value = getattr(self, name)
            if fmt == "seg":
                out[off:off + 16] = value.pack()
            else:
                struct.pack_into("<" + fmt, out, off, value)
        return bytes(out)

    def nonzero_fields(self) -> list[str]:
        """Names of fields whose value is not zero (reserved areas included)."""
        out = []
        for name, _, fmt in self.FIELDS:
            value = getattr(self, name)
            if fmt == "seg":
                if value.pack() != bytes(16):
                    out.append(name)
            elif fmt.endswith("s"):
                if any(value):
                    out.append(name)
            elif value:
                out.append(name)
        return out

    def as_dict(self, nonzero_only: bool = True) -> dict:
        out = {}
        names = set(self.nonzero_fields()) if nonzero_only else None
        for name, _, fmt in self.FIELDS:
            if names is not None and name not in names:
                continue
            value = getattr(self, name)
            if fmt == "seg":
                out[name] = value.as_dict()
            elif fmt.endswith("s"):
                out[name] = bytes(value).hex()
            else:
                out[name] = value
        return out

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and self.to_bytes() == other.to_bytes()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.as_dict()})"


def _seq(start: int, names: str, fmt: str = "Q") -> list[tuple[str, int, str]]:
    size = 16 if fmt == "seg" else struct.calcsize("<" + fmt)
    return [(n, start + i * size, fmt) for i, n in enumerate(names.split())]


class SevEsVmsa(_Table):
    """The SEV-ES / SEV-SNP VMSA page."""

    SIZE = 0x1000
    FIELDS = tuple(
        _seq(0x000, "es cs ss ds fs gs gdtr ldtr idtr tr", "seg")  # 0x10 each
        + _seq(0x0A0, "vmpl0_ssp vmpl1_ssp vmpl2_ssp vmpl3_ssp u_cet")
        + [("reserved_0xc8", 0x0C8, "2s"), ("vmpl", 0x0CA, "B"), ("cpl", 0x0CB, "B"),
           ("reserved_0xcc", 0x0CC, "4s"), ("efer", 0x0D0, "Q"),
           ("reserved_0xd8", 0x0D8, "104s")]
        + _seq(0x140, "xss cr4 cr3 cr0 dr7 dr6 rflags rip dr0 dr1 dr2 dr3 dr0_addr_mask "
               "dr1_addr_mask dr2_addr_mask dr3_addr_mask")
        + [("reserved_0x1c0", 0x1C0, "24s")]
        + _seq(0x1D8, "rsp s_cet ssp isst_addr rax star lstar cstar sfmask kernel_gs_base "
               "sysenter_cs sysenter_esp sysenter_eip cr2")
        + [("reserved_0x248", 0x248, "32s")]
        + _seq(0x268, "g_pat dbgctl br_from br_to last_excp_from last_excp_to")
        + [("reserved_0x298", 0x298, "72s"), ("spec_ctrl", 0x2E0, "Q"),
           ("pkru", 0x2E8, "I"), ("tsc_aux", 0x2EC, "I"), ("reserved_0x2f0", 0x2F0, "24s")]
        + _seq(0x308, "rcx rdx rbx reserved_0x320 rbp rsi rdi r8 r9 r10 r11 r12 r13 r14 r15")
        + [("reserved_0x380", 0x380, "16s")]
        + _seq(0x390, "guest_exit_info_1 guest_exit_info_2 guest_exit_int_info guest_nrip "
               "sev_features vintr_ctrl guest_exit_code virtual_tom tlb_id pcpu_id event_inj "
               "xcr0")
        + [("reserved_0x3f0", 0x3F0, "16s"),  # XSAVE valid bitmap in later APMs
           ("x87_dp", 0x400, "Q"), ("mxcsr", 0x408, "I"), ("x87_ftw", 0x40C, "H"),
           ("x87_fsw", 0x40E, "H"), ("x87_fcw", 0x410, "H"), ("x87_fop", 0x412, "H"),
           ("x87_ds", 0x414, "H"), ("x87_cs", 0x416, "H"), ("x87_rip", 0x418, "Q"),
           ("fpreg_x87", 0x420, "80s"), ("fpreg_xmm", 0x470, "256s"),
           ("fpreg_ymm", 0x570, "256s"), ("reserved_0x670", 0x670, "2448s")])

    #: SEV_FEATURES bit 0: SNP active (QEMU SVM_SEV_FEAT_SNP_ACTIVE).
    SEV_FEAT_SNP_ACTIVE = 1

    #: Fields QEMU accepts non-zero in an IGVM VMSA (target/i386/sev.c:
    #: check_vmsa_supported clears these, then requires the rest of its
    #: 0x670-byte ``struct sev_es_save_area`` to be zero; sev_features is
    #: checked by check_sev_features).
    QEMU_ALLOWED = frozenset(
        "es cs ss ds fs gs gdtr idtr ldtr tr efer cr0 cr3 cr4 xcr0 dr6 dr7 rax rcx rdx rbx "
        "rsp rbp rsi rdi r8 r9 r10 r11 r12 r13 r14 r15 rip rflags g_pat x87_fcw mxcsr "
        "sev_features".split())
    #: Bytes of the save area QEMU checks (sizeof(struct sev_es_save_area)).
    QEMU_CHECKED_SIZE = 0x670

    def qemu_unsupported_fields(self) -> list[str]:
        """Non-zero fields QEMU's check_vmsa_supported would reject."""
        return [n for n in self.nonzero_fields()
                if n not in self.QEMU_ALLOWED and self.offset_of(n) < self.QEMU_CHECKED_SIZE]


class NativeVpContextX64(_Table):
    """``IgvmNativeVpContextX64`` (igvm_defs), 232 bytes; registers not named
    take their architectural reset values."""

    SIZE = 232
    FIELDS = tuple(
        _seq(0, "rax rcx rdx rbx rsp rbp rsi rdi r8 r9 r10 r11 r12 r13 r14 r15 rip rflags "
             "idtr_base")
        + [("idtr_limit", 152, "H"), ("reserved", 154, "4s"), ("gdtr_limit", 158, "H"),
           ("gdtr_base", 160, "Q"),
           ("code_selector", 168, "H"), ("code_attributes", 170, "H"), ("code_base", 172, "I"),
           ("code_limit", 176, "I"),
           ("data_selector", 180, "H"), ("data_attributes", 182, "H"), ("data_base", 184, "I"),
           ("data_limit", 188, "I")]
        + _seq(192, "gs_base cr0 cr3 cr4 efer"))
