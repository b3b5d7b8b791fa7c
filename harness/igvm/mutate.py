"""Named mutators: negative fixtures, one per validator rule.

``MUTATORS[rule_id](valid_bytes) -> bytes`` returns a file that breaks
``rule_id`` (other rules may break too when one fault implies another,
e.g. a header of the wrong length).  Input a mutator cannot work on raises
:class:`MutationError` (the fixed header is gone, no platform left, ...).  Every mutator accepts any valid file
(the builder's, or a vendor's), keeps the checksum right unless the rule
is the checksum, and is deterministic.  ``compose(*ids)`` chains them.

Mutators work on the model when the fault can be expressed there (added
headers, odd field values) and on bytes when it cannot (fixed-header
fields, lengths, padding).  Strict rules (``rules.STRICT_RULES``) only fire
with ``validate(..., strict=True)``.
"""

from __future__ import annotations

import struct
import zlib
from typing import Callable

from harness.errors import HarnessError
from harness.igvm import defs
from harness.igvm import model as m
from harness.igvm.builder import BuildError, serialize
from harness.igvm.defs import (
    Architecture, HeaderType, PlatformType, Section, KVM_VMSA_GPA, PAGE_SIZE_4K,
)
from harness.igvm.parser import parse

Mutator = Callable[[bytes], bytes]

_X64_TYPES = (PlatformType.NATIVE, PlatformType.SEV_SNP, PlatformType.SEV_ES,
              PlatformType.SEV, PlatformType.TDX, PlatformType.VSM_ISOLATION)


class MutationError(HarnessError):
    """The input cannot be mutated this way (e.g. unreadable fixed header)."""


# ------------------------------------------------------------------ helpers


def _model(data: bytes) -> m.IgvmFile:
    f = parse(data, check=False).materialize()  # edited in place: plain lists
    f.buffer = None
    return f


def _fixed(data: bytes) -> defs.Layout:
    version = struct.unpack_from("<I", data, 4)[0]
    return defs.FIXED_HEADER_V2 if version == 2 and len(data) >= 32 else defs.FIXED_HEADER_V1


def _refresh(buf: bytearray) -> bytes:
    """Recompute the checksum over fixed + variable headers."""
    fixed = _fixed(bytes(buf))
    vho, vhs = struct.unpack_from("<II", buf, 8)
    struct.pack_into("<I", buf, defs.CHECKSUM_OFFSET, 0)
    crc = zlib.crc32(bytes(buf[vho:vho + vhs]), zlib.crc32(bytes(buf[:fixed.size])))
    struct.pack_into("<I", buf, defs.CHECKSUM_OFFSET, crc)
    return bytes(buf)


def _set_u32(data: bytes, offset: int, value: int, refresh: bool = True) -> bytes:
    buf = bytearray(data)
    struct.pack_into("<I", buf, offset, value & 0xFFFFFFFF)
    return _refresh(buf) if refresh else bytes(buf)


def _tlvs(data: bytes):
    """(offset, type, length) of each variable header."""
    vho, vhs = struct.unpack_from("<II", data, 8)
    pos, end = vho, vho + vhs
    out = []
    while pos + 8 <= end:
        t, length = struct.unpack_from("<II", data, pos)
        out.append((pos, t, length))
        pos += 8 + defs.align_up(length)
    return out


def _declared(f: m.IgvmFile) -> int:
    mask = 0
    for p in f.platforms:
        if isinstance(p, m.SupportedPlatform):
            mask |= p.compatibility_mask
    return mask


def _free_bit(f: m.IgvmFile, skip: int = 0) -> int:
    used = _declared(f) | skip
    for i in range(32):
        if not used & (1 << i):
            return 1 << i
    raise MutationError("no free compatibility mask bit")


def _absent_type(f: m.IgvmFile) -> int:
    present = set(f.platform_types())
    allowed = defs.PLATFORMS_FOR_ARCH[Architecture(f.architecture)]
    for t in _X64_TYPES + (PlatformType.CCA,):
        if t in allowed and t not in present:
            return t
    raise MutationError("every platform type is already declared")


def _any_mask(f: m.IgvmFile) -> int:
    for p in f.platforms:
        if isinstance(p, m.SupportedPlatform):
            return p.compatibility_mask
    raise MutationError("the file declares no platform")


def _ensure_platform(f: m.IgvmFile, types) -> tuple[int, int]:
    """(mask, type) of the first present platform in ``types``, else add types[0]."""
    for t in types:
        p = f.platform(t)
        if p is not None:
            return p.compatibility_mask, t
    mask = _free_bit(f)
    f.platforms.append(m.SupportedPlatform(mask, int(types[0])))
    return mask, types[0]


def _with(f: m.IgvmFile, *headers: m.Header) -> m.IgvmFile:
    for h in headers:
        {Section.PLATFORM: f.platforms, Section.INITIALIZATION: f.initializations,
         Section.DIRECTIVE: f.directives}[h.section].append(h)
    return f


def _add(*make) -> Mutator:
    """Mutator appending headers built by ``make(f)`` callables."""
    def mutate(data: bytes) -> bytes:
        f = _model(data)
        for fn in make:
            h = fn(f)
            for one in (h if isinstance(h, list) else [h]):
                _with(f, one)
        return serialize(f)
    return mutate


def _to_v2(data: bytes) -> bytes:
    if struct.unpack_from("<I", data, 4)[0] == 2:
        return data
    f = _model(data)
    f.revision = 2
    return serialize(f)


def _unused_area_index(f: m.IgvmFile) -> int:
    used = [d.parameter_area_index for d in f.directives
            if isinstance(d, (m.ParameterArea, m.Parameter, m.ParameterInsert))]
    return max(used, default=0) + 100


# ----------------------------------------------------------- fixed header


def _file_too_small(d): return d[:16]
def _bad_magic(d): return _set_u32(d, 0, 0x4D564748)  # "HGVM"
def _version(d): return _set_u32(d, 4, 3)
def _bad_arch(d): return _set_u32(_to_v2(d), 24, 7)
def _page_size(d): return _set_u32(_to_v2(d), 28, 0x2000)
def _total_size(d): return _set_u32(d, 16, len(d) + 1)
def _vho_range(d): return _set_u32(d, 8, len(d))


def _vhs_range(d):
    vho = struct.unpack_from("<I", d, 8)[0]
    return _set_u32(d, 12, len(d) - vho)


def _checksum(d):
    buf = bytearray(d)
    buf[defs.CHECKSUM_OFFSET] ^= 0x5A
    return bytes(buf)


def _vho_invalid(d):
    f = _model(d)
    return serialize(f, variable_header_offset=_fixed(d).size + 4)


# --------------------------------------------------------- variable walk


def _header_truncated(d):
    vhs = struct.unpack_from("<I", d, 12)[0]
    return _set_u32(d, 12, vhs - 4)


def _unknown_type(d):
    f = _model(d)
    f.directives.append(m.RawHeader(0x3FF, bytes(8)))
    return serialize(f)


def _section_order(d):
    f = _model(d)
    mask = _any_mask(f)
    if not f.directives:
        f.directives.append(m.PageData(0, mask))
    body = defs.GUEST_POLICY.pack(policy=0, compatibility_mask=mask, reserved=0)
    f.directives.append(m.RawHeader(HeaderType.GUEST_POLICY, body, Section.DIRECTIVE))
    return serialize(f)


def _length_mismatch(d):
    f = _model(d)
    body = defs.PAGE_DATA.pack(gpa=0, compatibility_mask=_any_mask(f), file_offset=0, flags=0,
                               data_type=0, reserved=0) + bytes(8)
    f.directives.append(m.RawHeader(HeaderType.PAGE_DATA, body))
    return serialize(f)


def _vp_context_for(f: m.IgvmFile, **kw) -> m.VpContext:
    mask, t = _ensure_platform(f, (PlatformType.SEV_SNP, PlatformType.SEV_ES,
                                   PlatformType.NATIVE, PlatformType.SEV))
    return m.VpContext(KVM_VMSA_GPA, mask, 0, bytes(PAGE_SIZE_4K), **kw)


def _padding(d):
    f = _model(d)
    _with(f, _vp_context_for(f))
    out = bytearray(serialize(f))
    off = [o for o, t, _ in _tlvs(bytes(out)) if t == HeaderType.VP_CONTEXT][-1]
    out[off + 8 + 20] = 0xA5  # first padding byte after the 20-byte structure
    return _refresh(out)


# --------------------------------------------------------------- platform


def _new_platform(**kw) -> Callable:
    def make(f):
        fields = dict(compatibility_mask=_free_bit(f), platform_type=_absent_type(f))
        fields.update({k: (v(f) if callable(v) else v) for k, v in kw.items()})
        return m.SupportedPlatform(**fields)
    return make


def _two_bits(f):
    a = _free_bit(f)
    return a | _free_bit(f, a)


def _shared_gpa(d):
    f = _model(d)
    p = f.platform(PlatformType.NATIVE) or f.platform(PlatformType.VSM_ISOLATION)
    if p is None:
        p = _with(f, m.SupportedPlatform(_free_bit(f), PlatformType.NATIVE)).platforms[-1]
    p.shared_gpa_boundary = 0x8000000000
    return serialize(f)


def _arch_mismatch(d):
    f = _model(d)
    t = PlatformType.CCA if f.architecture == Architecture.X64 else PlatformType.SEV_SNP
    return serialize(_with(f, m.SupportedPlatform(_free_bit(f), t)))


def _duplicate(d):
    f = _model(d)
    first = next(p for p in f.platforms if isinstance(p, m.SupportedPlatform))
    return serialize(_with(f, m.SupportedPlatform(_free_bit(f), first.platform_type)))


def _no_platform(d):
    f = _model(d)
    f.platforms = []
    return serialize(f)


# ---------------------------------------------------------- per header


def _page(**kw) -> Callable:
    def make(f):
        fields = dict(gpa=0x7FF000, compatibility_mask=_any_mask(f))
        fields.update(kw)
        return m.PageData(**fields)
    return make


def _file_data_range(d):
    f = _model(d)
    _with(f, m.PageData(0x7FF000, _any_mask(f), data=b"\x01" * PAGE_SIZE_4K))
    out = serialize(f)
    off = [o for o, t, _ in _tlvs(out) if t == HeaderType.PAGE_DATA][-1]
    return _set_u32(out, off + 8 + 12, len(out) - 16)  # file_offset near the end


def _cca_policy(**kw):
    def make(f):
        return m.CcaPolicy(compatibility_mask=_any_mask(f), **kw)
    return make


def _vbs_mask(f: m.IgvmFile, with_context: bool) -> list:
    """Mask of a VSM platform (added if absent) and, if asked, the VBS VP
    context for VP 0 / VTL 0 that relocation headers require."""
    mask, _ = _ensure_platform(f, (PlatformType.VSM_ISOLATION,))
    have = any(isinstance(d, m.VpContext) and d.compatibility_mask == mask
               for d in f.directives)
    if with_context and not have:
        # VbsVpContextHeader(1) + one register: vtl 0, HvX64RegisterRip (0x20010)
        regs = struct.pack("<I", 1) + defs.VBS_VP_CONTEXT_REGISTER.pack(
            vtl=0, register_name=0x20010, mbz=bytes(11), register_value=bytes(16))
        f.directives.append(m.VpContext(0, mask, 0, regs))
    return mask


def _reloc(with_context: bool = True, **kw):
    def make(f):
        fields = dict(compatibility_mask=_vbs_mask(f, with_context), vp_index=0, vtl=0, flags=0,
                      relocation_alignment=0x200000, relocation_region_gpa=0x40000000,
                      relocation_region_size=0x200000, minimum_relocation_gpa=0x40000000,
                      maximum_relocation_gpa=0x80000000)
        fields.update(kw)
        return m.RelocatableRegion(**fields)
    return make


def _page_table(with_context: bool = True, **kw):
    def make(f):
        fields = dict(compatibility_mask=_vbs_mask(f, with_context), vp_index=0, vtl=0,
                      gpa=0x90000000,
                      size=0x10000, used_size=0x1000)
        fields.update(kw)
        return m.PageTableRelocation(**fields)
    return make


def _area_reused(d):
    f = _model(d)
    i = _unused_area_index(f)
    return serialize(_with(f, m.ParameterArea(PAGE_SIZE_4K, i), m.ParameterArea(PAGE_SIZE_4K, i)))


def _area_undeclared(d):
    f = _model(d)
    return serialize(_with(f, m.VpCountParameter(_unused_area_index(f), 0)))


def _area_inserted(d):
    f = _model(d)
    i = _unused_area_index(f)
    mask = _any_mask(f)
    return serialize(_with(f, m.ParameterArea(PAGE_SIZE_4K, i),
                           m.ParameterInsert(0x7FE000, mask, i), m.VpCountParameter(i, 0)))


def _insert_in_page_table(d):
    f = _model(d)
    i = _unused_area_index(f)
    _with(f, _page_table(gpa=0x90000000)(f))
    mask = f.initializations[-1].compatibility_mask
    return serialize(_with(f, m.ParameterArea(PAGE_SIZE_4K, i),
                           m.ParameterInsert(0x90001000, mask, i)))


def _vp_platform(d):
    f = _model(d)
    return serialize(_with(f, m.VpContext(KVM_VMSA_GPA, _free_bit(f), 0, bytes(PAGE_SIZE_4K))))


def _vp_tail(d):
    f = _model(d)
    mask, _ = _ensure_platform(f, (PlatformType.NATIVE, PlatformType.SEV))
    ctx = bytearray(PAGE_SIZE_4K)
    ctx[300] = 1
    return serialize(_with(f, m.VpContext(0, mask, 0, bytes(ctx))))


def _vbs_invalid(d):
    f = _model(d)
    mask, _ = _ensure_platform(f, (PlatformType.VSM_ISOLATION,))
    return serialize(_with(f, m.VpContext(0, mask, 0, struct.pack("<I", 0))))


def _vp_reserved(d):
    f = _model(d)
    return serialize(_with(f, _vp_context_for(f, reserved=1)))


def _mask_undeclared(d):
    f = _model(d)
    return serialize(_with(f, m.PageData(0x7FF000, _free_bit(f))))


MUTATORS: dict[str, Mutator] = {
    "file-too-small": _file_too_small,
    "bad-magic": _bad_magic,
    "unsupported-format-version": _version,
    "bad-architecture": _bad_arch,
    "unsupported-page-size": _page_size,
    "total-size-mismatch": _total_size,
    "variable-header-offset-out-of-range": _vho_range,
    "variable-header-size-out-of-range": _vhs_range,
    "checksum-mismatch": _checksum,
    "variable-header-offset-invalid": _vho_invalid,
    "header-truncated": _header_truncated,
    "unknown-header-type": _unknown_type,
    "section-order": _section_order,
    "header-length-mismatch": _length_mismatch,
    "header-padding-nonzero": _padding,
    "platform-mask-not-single-bit": _add(_new_platform(compatibility_mask=_two_bits)),
    "platform-vtl-invalid": _add(_new_platform(highest_vtl=1)),
    "platform-type-unknown": _add(_new_platform(platform_type=0x7F)),
    "platform-version-invalid": _add(_new_platform(platform_version=2)),
    "platform-shared-gpa-boundary": _shared_gpa,
    "platform-arch-mismatch": _arch_mismatch,
    "platform-duplicate": _duplicate,
    "no-platform": _no_platform,
    "platform-mask-duplicate": _add(_new_platform(compatibility_mask=_any_mask)),
    "mask-undeclared": _mask_undeclared,
    "reserved-nonzero": _add(_page(reserved=1)),
    "gpa-unaligned": _add(_page(gpa=0x7FF123)),
    "size-unaligned": _add(lambda f: m.RequiredMemory(0x7FF000, _any_mask(f), 0x1001)),
    "vtl-invalid": _add(_page_table(vtl=3)),
    "file-data-out-of-range": _file_data_range,
    "header-arch-mismatch": _add(_cca_policy()),
    "relocation-alignment-invalid": _add(_reloc(relocation_alignment=0x1001)),
    "relocation-address-unaligned": _add(_reloc(relocation_region_gpa=0x40001000)),
    "page-table-used-size-exceeds": _add(_page_table(size=0x1000, used_size=0x2000)),
    "page-table-relocation-duplicate": _add(_page_table(), _page_table(gpa=0xA0000000)),
    "relocation-regions-overlap": _add(_reloc(), _reloc(relocation_region_size=0x400000)),
    "cca-policy-mask": _add(_cca_policy()),
    "cca-policy-ones-zeroes": _add(_cca_policy(attributes_required_zeroes=1,
                                               attributes_required_ones=1)),
    "no-matching-vp-context": _add(_reloc(with_context=False)),
    "page-data-type-invalid": _add(_page(data_type=4)),
    "page-data-flags-reserved": _add(_page(flags=0x8)),
    "page-data-2mb-unaligned": _add(_page(flags=0x1)),
    "required-memory-flags-reserved": _add(
        lambda f: m.RequiredMemory(0x7FF000, _any_mask(f), 0x1000, flags=2)),
    "vp-context-reserved-nonzero": _vp_reserved,
    "parameter-area-index-reused": _area_reused,
    "parameter-area-undeclared": _area_undeclared,
    "parameter-area-inserted": _area_inserted,
    "parameter-insert-in-page-table": _insert_in_page_table,
    "vp-context-platform": _vp_platform,
    "vp-context-nonzero-tail": _vp_tail,
    "vbs-vp-context-invalid": _vbs_invalid,
}


def _guarded(name: str, fn: Mutator) -> Mutator:
    """Unreadable input (e.g. an earlier mutation cut the fixed header)
    becomes one MutationError instead of a struct/index error."""
    def mutate(data: bytes) -> bytes:
        if len(data) < defs.FIXED_HEADER_V1.size and name != "file-too-small":
            raise MutationError(f"{name}: input of {len(data)} bytes has no fixed header")
        try:
            return fn(data)
        except (struct.error, IndexError, ValueError, OverflowError, StopIteration,
                BuildError) as exc:
            raise MutationError(f"{name}: cannot mutate this input: {exc}") from None
    mutate.__name__ = fn.__name__
    mutate.__doc__ = fn.__doc__
    return mutate


MUTATORS = {name: _guarded(name, fn) for name, fn in MUTATORS.items()}


def _truncate(d: bytes) -> bytes:
    return d[:len(d) // 2]


#: Generic damage beyond one rule each (what a broken download looks like).
EXTRA_MUTATORS: dict[str, Mutator] = {
    "truncate-half": _truncate,
    "append-garbage": lambda d: d + b"\xde\xad\xbe\xef",
    "zero-fixed-header": lambda d: bytes(24) + d[24:],
}


def _zero_mask(d):
    f = _model(d)
    return serialize(_with(f, m.SupportedPlatform(0, _absent_type(f))))


def _parameter_before_area(d):
    f = _model(d)
    i = _unused_area_index(f)
    return serialize(_with(f, m.VpCountParameter(i, 0), m.ParameterArea(PAGE_SIZE_4K, i)))


def _length_lies(d):
    off, t, length = _tlvs(d)[0]
    return _set_u32(d, off + 4, length - 8)  # the first header claims 8 bytes less


#: The faults of issue 2's list, by name: (rule that must fire, mutator).
NAMED_MUTATORS: dict[str, tuple[str, Mutator]] = {
    "wrong-magic": ("bad-magic", _bad_magic),
    "wrong-version": ("unsupported-format-version", _version),
    "bad-checksum": ("checksum-mismatch", _checksum),
    "wrong-total-size": ("total-size-mismatch", _total_size),
    "truncated-file": ("total-size-mismatch", lambda d: d[:len(d) - 1]),
    "section-order": ("section-order", _section_order),
    "unaligned-gpa": ("gpa-unaligned", MUTATORS["gpa-unaligned"]),
    "oversize-page-data": ("file-data-out-of-range", _file_data_range),
    "reserved-bits-set": ("reserved-nonzero", MUTATORS["reserved-nonzero"]),
    "zero-compatibility-mask": ("platform-mask-not-single-bit", _zero_mask),
    "multi-bit-compatibility-mask": ("platform-mask-not-single-bit",
                                     MUTATORS["platform-mask-not-single-bit"]),
    "duplicate-platform": ("platform-duplicate", _duplicate),
    "parameter-before-declaration": ("parameter-area-undeclared", _parameter_before_area),
    "vp-context-without-platform": ("vp-context-platform", _vp_platform),
    "header-length-lies": ("header-length-mismatch", _length_lies),
}


NAMED_MUTATORS = {name: (rule, _guarded(name, fn)) for name, (rule, fn) in NAMED_MUTATORS.items()}


def compose(*names: str) -> Mutator:
    """One mutator applying the named ones left to right."""
    def find(n):
        if n in MUTATORS:
            return MUTATORS[n]
        if n in NAMED_MUTATORS:
            return NAMED_MUTATORS[n][1]
        return EXTRA_MUTATORS[n]
    fns = [find(n) for n in names]

    def mutate(data: bytes) -> bytes:
        for fn in fns:
            data = fn(data)
        return data
    mutate.__name__ = "+".join(names)
    return mutate
