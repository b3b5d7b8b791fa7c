"""Fixture recipes of the matrix: one IGVM file (plus extra QEMU arguments)
per cell, built with :mod:`harness.igvm.builder` around the guest payloads.

A recipe knows two platforms: the platforms the *file* declares (``params
.platforms``, default: the cell's platform) and the platform the guest will
*run* as (the cell's platform: it decides the payload's I/O mode, the kind
of VP context and the C-bit in page tables).  Directives that are not
platform-specific carry the union of the declared masks; each declared
platform gets its own configuration page, whose exit status tells which
platform QEMU selected (the expected winner's page carries
:data:`STATUS_OK`).

Forms:

* both forms load ``payload64`` at 1 MiB (``payload64-ghcb`` when the guest
  runs as SEV-ES or SEV-SNP) with identity page tables (C-bit set on the SEV
  platforms), GDT and stack in the layout of harness/fixtures/native.py;
* ``reset-vector``: no VP context; ``reset-long`` is the page at
  0xFFFFF000 and switches from real mode to the payload;
* ``vp-context``: the payload is entered in long mode through a VP
  context: a native context (``IgvmNativeVpContextX64``) on NATIVE and SEV
  (the IGVM format's layout for SEV), a VMSA at the KVM VMSA GPA on SEV-ES
  and SEV-SNP.

Anything a recipe cannot build raises :class:`FixtureError` (a suite error
of that cell, never a QEMU verdict).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.errors import HarnessError
from harness.fixtures import native as nat
from harness.guests.protocol import CONFIG_GPA, ConfigPage, IoMode
from harness.igvm import defs
from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import HeaderType, PageDataType, PlatformType, Section, KVM_VMSA_GPA
from harness.igvm.vmsa import Segment, SevEsVmsa

#: Exit status the selected platform's configuration page asks for; QEMU
#: then exits with (0x2A << 1) | 1 = 85 (hw/misc/debugexit.c).
STATUS_OK = 0x2A
PLATFORM_TYPES = {"native": PlatformType.NATIVE, "sev": PlatformType.SEV,
                  "sev-es": PlatformType.SEV_ES, "sev-snp": PlatformType.SEV_SNP}
STRENGTH = ("native", "sev", "sev-es", "sev-snp")  # backends/igvm.c: strongest wins

EXTRA_PAGE_GPA = 0x80000
PARAM_GPA = 0x20000
REQUIRED_MEMORY_GPA = 0x600000
NON_RAM_GPA = 0xFEC00000          # IOAPIC MMIO (hw/i386: IO_APIC_DEFAULT_ADDRESS)
ERROR_RANGE_GPA = 0x700000
BAD_VMSA_GPA = 0x10F000
DEFAULT_CBIT = 51


class FixtureError(HarnessError):
    """A cell's fixture could not be built (a suite error)."""

    exit_code = 2


@dataclass
class Fixture:
    """What a cell hands to QEMU."""

    igvm_path: Path
    extra_args: list[str] = field(default_factory=list)
    expect_status: int = STATUS_OK
    description: str = ""


def winner(declared: list[str], runtime: str) -> str | None:
    """The platform QEMU should select for a file declaring ``declared``
    when run as ``runtime`` (backends/igvm.c qigvm_supported_platform_compat_mask
    with target/i386/sev.c cgs_check_support): the strongest supported one."""
    supported = {"native": {"native"},
                 "sev": {"native", "sev"},
                 "sev-es": {"native", "sev", "sev-es"},
                 "sev-snp": {"native", "sev", "sev-es", "sev-snp"}}[runtime]
    best = None
    for p in STRENGTH:
        if p in declared and p in supported:
            best = p
    return best


def _io_mode(runtime: str) -> IoMode:
    return IoMode.GHCB_MSR if runtime in ("sev-es", "sev-snp") else IoMode.PORT


def page_tables(cbit: int | None) -> dict[int, bytes]:
    """The payload's identity map (harness.fixtures.native layout), with the
    C-bit set in every entry when ``cbit`` is given (SEV: private memory)."""
    tables = nat.identity_page_tables()
    if cbit is None:
        return tables
    c = 1 << cbit
    out = {}
    for gpa, page in tables.items():
        qs = struct.unpack("<512Q", page)
        out[gpa] = struct.pack("<512Q", *((q | c) if q & nat.PTE_P else q for q in qs))
    return out


def vmsa_for(entry: int, runtime: str, params: dict[str, Any]) -> bytes:
    """A VMSA entering ``payload64`` in long mode, equivalent to the native
    context (only fields on QEMU's allow-list, docs/system/igvm.rst)."""
    code = Segment(nat.CODE_SEL, _vmsa_attr(nat.CODE64_ATTR), 0xFFFFFFFF, 0)
    data = Segment(nat.DATA_SEL, _vmsa_attr(nat.DATA_ATTR), 0xFFFFFFFF, 0)
    sev_features = SevEsVmsa.SEV_FEAT_SNP_ACTIVE if runtime == "sev-snp" else 0
    if "sev_features" in params:
        sev_features = int(params["sev_features"])
    sev_features |= int(params.get("sev_features_or", 0))
    v = SevEsVmsa(cs=code, ds=data, es=data, ss=data, fs=data, gs=data,
                  gdtr=Segment(0, 0, len(nat.gdt()) - 1, nat.GDT_GPA),
                  cr0=nat.CR0_PE | nat.CR0_MP | nat.CR0_ET | nat.CR0_NE | nat.CR0_PG,
                  cr3=nat.PML4_GPA, cr4=nat.CR4_PAE,
                  efer=nat.EFER_LME | nat.EFER_LMA,
                  rip=entry, rsp=nat.STACK_TOP, rflags=0x2, xcr0=1,
                  g_pat=0x0007040600070406, sev_features=sev_features)
    if "field" in params:
        setattr(v, params["field"], int(params["value"]))
    return v.to_bytes()


def _vmsa_attr(vmx_attr: int) -> int:
    """VMX-style access rights (type..P in bits 0-7, AVL/L/DB/G in 12-15)
    to the VMCB's compressed 12-bit form (AMD APM vol. 2, 15.5.1)."""
    return (vmx_attr & 0xFF) | ((vmx_attr >> 4) & 0xF00)


def _patch_page_offset(data: bytes, gpa: int, new_offset: int) -> bytes:
    """Point the PAGE_DATA directive for ``gpa`` at ``new_offset`` and fix
    the checksum (fixed header v1 + variable headers, CRC32)."""
    buf = bytearray(data)
    vho, vhs = struct.unpack_from("<II", buf, 8)
    off = vho
    while off < vho + vhs:
        typ, length = struct.unpack_from("<II", buf, off)
        if typ == HeaderType.PAGE_DATA and struct.unpack_from("<Q", buf, off + 8)[0] == gpa:
            struct.pack_into("<I", buf, off + 8 + 12, new_offset)
            struct.pack_into("<I", buf, defs.CHECKSUM_OFFSET, 0)
            crc = zlib.crc32(bytes(buf[:vho + vhs]))
            struct.pack_into("<I", buf, defs.CHECKSUM_OFFSET, crc)
            return bytes(buf)
        off += 8 + ((length + 7) & ~7)
    raise FixtureError(f"no PAGE_DATA for 0x{gpa:x} to patch")


@dataclass
class Context:
    """Inputs of a recipe."""

    case_id: str
    form: str
    platform: str                 # the runtime platform of the cell
    params: dict[str, Any]
    workdir: Path
    guests: dict                  # name -> harness.guests.build.GuestImage
    cbit: int = DEFAULT_CBIT
    rule: str | None = None       # mutator rule (recipe "mutator")


def _guest_file(ctx: Context) -> tuple[bytes, int, str]:
    """Build the IGVM file of the 'guest' recipe; returns (bytes, expected
    status, description)."""
    p = ctx.params
    declared = list(p.get("platforms", [ctx.platform]))
    for name in declared:
        if name not in PLATFORM_TYPES:
            raise FixtureError(f"{ctx.case_id}: unknown platform {name!r} in params")
    win = winner(declared, ctx.platform)
    b = IgvmBuilder()
    masks = {name: b.platform(PLATFORM_TYPES[name]) for name in declared}
    union = 0
    for m in masks.values():
        union |= m
    io_mode = _io_mode(ctx.platform)

    # One configuration page per declared platform: the winner's says OK.
    for name, m in masks.items():
        status = STATUS_OK if name == win else 0x30 + int(PLATFORM_TYPES[name])
        b.page(CONFIG_GPA, ConfigPage(io_mode=io_mode, exit_status=status).pack(), mask=m)
        if p.get("poison_losers") and name != win:
            b.page(NON_RAM_GPA, b"poison", mask=m)

    guest = ctx.guests["payload64-ghcb" if io_mode == IoMode.GHCB_MSR else "payload64"]
    sev = ctx.platform != "native"
    for gpa, page in sorted(page_tables(ctx.cbit if sev else None).items()):
        b.page(gpa, page, mask=union)
    b.page(nat.GDT_GPA, nat.gdt(), mask=union)
    b.zero_pages(nat.STACK_GPA, (nat.STACK_TOP - nat.STACK_GPA) // 4096, mask=union)
    b.pages(guest.load_address, guest.data, mask=union)
    if ctx.form == "reset-vector":
        reset = ctx.guests["reset-long"]
        if len(reset.data) != 4096 or guest.entry != 0x100000:
            raise FixtureError("reset-long must be one page and payload64 must start at 1 MiB")
        b.page(nat.RESET_PAGE_GPA, reset.data, mask=union)
    else:
        vm = dict(p.get("vmsa", {}))
        for name, m in masks.items():
            indices = [0, 1] if p.get("ap_context") else [0]
            for vp in indices:
                if name == "native":
                    b.vp_context(0, nat.NativeContext().to_bytes(guest.entry), mask=m, vp_index=vp)
                elif name == "sev":
                    # The IGVM format gives SEV (no encrypted state) the native
                    # context layout; QEMU still hands it to the SEV object as a VMSA.
                    b.vp_context(int(vm.get("gpa", KVM_VMSA_GPA)),
                                 nat.NativeContext().to_bytes(guest.entry), mask=m, vp_index=vp)
                else:
                    b.vp_context(int(vm.get("gpa", KVM_VMSA_GPA)), vmsa_for(guest.entry, name, vm),
                                 mask=m, vp_index=vp)

    extra = p.get("extra_page")
    if extra:
        dtype = PageDataType[extra.get("type", "NORMAL")]
        data = None if extra.get("zero") else b"IGVM matrix extra page".ljust(4096, b"\xa5")
        b.page(EXTRA_PAGE_GPA, data, mask=union, data_type=dtype,
               unmeasured=bool(extra.get("unmeasured")))
    if p.get("oversize_page"):
        b.page(EXTRA_PAGE_GPA, b"\x5a" * 4096, mask=union)
    if p.get("non_ram_page"):
        b.page(NON_RAM_GPA, b"non-RAM", mask=union)
    params = p.get("parameters", [])
    if params:
        size = int(p.get("area_size", 4096))
        idx = b.parameter_area(size)
        for i, kind in enumerate(params):
            getattr(b, kind)(idx, 0 if kind == "memory_map" else 4 * i)
        b.parameter_insert(PARAM_GPA, idx, mask=union)
    if p.get("insert_undefined_area"):
        b.parameter_insert(PARAM_GPA + 0x1000, 7, mask=union)
    if p.get("required_memory"):
        b.required_memory(REQUIRED_MEMORY_GPA, 0x200000, mask=union)
    directive = p.get("directive")
    if directive == "ERROR_RANGE":
        b.error_range(ERROR_RANGE_GPA, 0x1000, mask=union)
    elif directive:
        idx = b.parameter_area(4096)
        b.parameter(HeaderType[directive], idx, 0)
        b.parameter_insert(PARAM_GPA + 0x2000, idx, mask=union)
    if "raw_type" in p:
        b.raw_header(int(p["raw_type"]), bytes(8), Section.DIRECTIVE)
    for _ in range(int(p.get("id_blocks", 0))):
        b.snp_id_block(mask=union)
    if "guest_policy" in p:
        for m in masks.values():
            b.guest_policy(int(p["guest_policy"]), mask=m)
    if p.get("corim"):
        _add_corim(b, union, p["corim"], bool(p.get("corim_optional")))
    data = b.build()
    if p.get("oversize_page"):
        # IGVM_VHS_PAGE_DATA has no size: the data is the 4 KiB at file_offset.
        # Data "larger than the page" is expressed as data running past the
        # end of the file (2 KiB inside, 2 KiB beyond).
        data = _patch_page_offset(data, EXTRA_PAGE_GPA, len(data) - 2048)
    desc = f"declares {', '.join(declared)}; expected selection: {win or 'none'}"
    return data, STATUS_OK, desc


def _add_corim(b: IgvmBuilder, mask: int, kind: str, optional: bool) -> None:
    """CoRIM headers as a vendor's image carries them (harness.corim): a
    launch-measurement CoRIM, and for "signed" its COSE_Sign1 by a key made
    for the fixture.  The digest is a placeholder: a loader refuses or
    accepts the header types before any digest is compared."""
    import hashlib

    from harness.corim import build as corim_build
    from harness.igvm import model as igvm_model
    from harness.igvm.defs import PlatformType

    if kind not in ("document", "signed"):
        raise FixtureError(f"corim = {kind!r}: 'document' or 'signed'")
    doc = corim_build.build(PlatformType.SEV_SNP, hashlib.sha384(b"matrix fixture").digest())
    b.add(igvm_model.CorimDocument(mask, doc, optional=optional))
    if kind == "signed":
        from cryptography.hazmat.primitives.asymmetric import ec

        from harness.corim import sign
        sig = sign.sign(doc, ec.generate_private_key(ec.SECP384R1()), "igvm-harness matrix")
        b.add(igvm_model.CorimSignature(mask, sig, optional=optional))


def _recipe_guest(ctx: Context) -> Fixture:
    data, status, desc = _guest_file(ctx)
    path = ctx.workdir / f"{ctx.case_id}.igvm"
    path.write_bytes(data)
    extra: list[str] = []
    fw = ctx.params.get("firmware")
    if fw:
        blob = ctx.workdir / "firmware.bin"
        blob.write_bytes(bytes(0x10000))
        if fw == "bios":
            extra = ["-bios", str(blob)]
        elif fw == "pflash":
            extra = ["-drive", f"if=pflash,format=raw,file={blob}"]
        else:
            raise FixtureError(f"{ctx.case_id}: unknown firmware kind {fw!r}")
    return Fixture(path, extra, status, desc)


def _recipe_missing(ctx: Context) -> Fixture:
    return Fixture(ctx.workdir / "no-such-file.igvm", description="file does not exist")


def _recipe_unreadable(ctx: Context) -> Fixture:
    d = ctx.workdir / "a-directory.igvm"
    d.mkdir(exist_ok=True)
    return Fixture(d, description="the path is a directory")


def _recipe_mutator(ctx: Context) -> Fixture:
    from harness.igvm.mutate import MUTATORS
    if ctx.rule not in MUTATORS:
        raise FixtureError(f"no mutator for rule {ctx.rule!r}")
    base, _, _ = _guest_file(Context(ctx.case_id, "reset-vector", ctx.platform, {},
                                     ctx.workdir, ctx.guests, ctx.cbit))
    try:
        data = MUTATORS[ctx.rule](base)
    except HarnessError as exc:
        raise FixtureError(f"mutator {ctx.rule} cannot apply: {exc}") from None
    path = ctx.workdir / f"{ctx.case_id}-{ctx.rule}.igvm"
    path.write_bytes(data)
    return Fixture(path, description=f"valid file broken by mutator {ctx.rule}")


RECIPES: dict[str, Callable[[Context], Fixture]] = {
    "guest": _recipe_guest,
    "missing-file": _recipe_missing,
    "unreadable-file": _recipe_unreadable,
    "mutator": _recipe_mutator,
}


def build(recipe: str, ctx: Context) -> Fixture:
    """Build a cell's fixture; every failure is a :class:`FixtureError`."""
    fn = RECIPES.get(recipe)
    if fn is None:
        raise FixtureError(f"unknown fixture recipe {recipe!r}")
    try:
        return fn(ctx)
    except FixtureError:
        raise
    except (HarnessError, KeyError, ValueError, TypeError, AttributeError, OSError) as exc:
        raise FixtureError(f"{ctx.case_id}: fixture recipe {recipe} failed: "
                           f"{type(exc).__name__}: {exc}") from None
