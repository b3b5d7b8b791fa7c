"""Parse IGVM bytes into the model, checking the specification's rules.

One scanner serves both :func:`parse` (raises on the first violation) and
:mod:`harness.igvm.validate` (collects every violation).  Its checks follow
the reference Rust parser, ``IgvmFile::new_from_binary`` in microsoft/igvm
``igvm/src/lib.rs``: the fixed header, the checksum, the variable-header
walk with section order, each header's ``new_from_binary_split`` and
``validate``, then the whole-file ``validate_platform_headers``,
``validate_initialization_headers`` and ``validate_directive_headers``.
Rule ids are in :mod:`harness.igvm.rules`.

Page data, VP-context data and parameter-area data are ``memoryview``
slices of the input buffer: nothing is copied, so parsing a 256 MiB file
costs the headers, not the pages.  Pass an ``mmap`` (as :func:`load`
does) to avoid reading the file into memory at all.  Nor are the headers
kept as objects: the model's sections are :class:`~harness.igvm.lazy.LazyHeaders`
(4 bytes per header), decoded again on each access.
"""

from __future__ import annotations

import array
import gc
import itertools
import os
import struct
import zlib

from harness.errors import HarnessError
from harness.igvm import defs
from harness.igvm import model as m
from harness.igvm.defs import (
    Architecture, HeaderType, PlatformType, Section, PAGE_SIZE_4K, PAGE_SIZE_2M,
    IGVM_MAGIC, OPTIONAL_BIT,
)
from harness.igvm.files import read  # noqa: F401  (parser.read: the files' reader, re-exported)
from harness.igvm.lazy import OFFSET_CODE, IndexBuilder, LazyHeaders
from harness.igvm.walk import PAGE_HEADER_SIZE, HeaderAt, Runs, Walk
from harness.igvm.limits import MAX_VIOLATIONS
from harness.igvm.rules import STRICT_RULES, IgvmFormatError, Violation, Violations

_U32 = struct.Struct("<I")
_TLV = defs.VARIABLE_HEADER.st
_PAGE_DATA = defs.PAGE_DATA.st
NATIVE_CONTEXT_SIZE = 232  # sizeof(IgvmNativeVpContextX64)
CCA_CONTEXT_SIZE = 80  # sizeof(IgvmVpContextAArch64Cca)

_PLATFORM_TYPES = frozenset(int(p) for p in PlatformType)
#: Types new_from_binary_split accepts (CoRIM needs the off-by-default feature).
_HANDLED = frozenset(int(t) for t in defs.HEADER_LAYOUTS) - {
    HeaderType.CORIM_DOCUMENT, HeaderType.CORIM_SIGNATURE}


class _Stop(Exception):
    """Ends the scan (first violation wanted, or nothing more can be read)."""


def _popcount(x: int) -> int:
    return bin(x).count("1")


def _bits(mask: int):
    while mask:
        low = mask & -mask
        yield low
        mask ^= low


#: header type -> values -> object, for the types decoded without checks
_PLAIN: dict = {}


def _plain_maker(t: int):
    """Positional construction when the class's parameters are the layout's
    fields in order (a third of the cost of keywords), else keywords."""
    cls, fields = m.HEADER_CLASSES[t], defs.HEADER_LAYOUTS[t].fields
    if tuple(getattr(cls, "_fields", ())[:len(fields)]) == tuple(fields):  # a Record
        return lambda v: cls(*v)
    return lambda v: cls(**dict(zip(fields, v)))


#: section of each type that has a layout (the rest: :func:`defs.section_of`)
_SECTIONS = {int(t): defs.section_of(t) for t in defs.HEADER_LAYOUTS}


class _Decoder:
    """Builds one mapped file's header objects from their bytes.

    The per-header checks report through :meth:`report`; here it drops
    them, so that :class:`~harness.igvm.lazy.LazyHeaders` can rebuild any
    header the scan saw, on access, exactly as the scan decoded it (the
    scanner below is the same decoder with reporting on)."""

    def __init__(self, buf, fds: int, mask_map: dict[int, int]) -> None:
        self.buf = buf
        self.n = len(buf)
        self.fds = fds
        self.mask_map = mask_map
        self._by_type = self.decoders()

    def report(self, rule: str, message: str, idx: int | None = None,
               off: int | None = None) -> None:
        """Checks found while decoding on access were reported by the scan."""

    def decode_at(self, pos: int) -> m.Header:
        """The header at byte ``pos``, as the scan's walk decoded it.

        Mirrors :meth:`_Scanner.walk`'s choice between a typed header and a
        :class:`RawHeader` (unknown type, wrong length, file data out of
        range), without its reports.  One difference: a VP context is
        decoded for the platforms of the whole file, where the walk knew
        only those declared before it (they differ only in a file with
        platform headers after directives, a section-order violation)."""
        buf = self.buf
        t, length = _TLV.unpack_from(buf, pos)
        body = pos + 8
        if t == 0x302 and length == 24:  # the common 4 KiB page data header
            gpa, mask, fo, flags, dtype, reserved = _PAGE_DATA.unpack_from(buf, body)
            if not fo:
                return m.PageData(gpa, mask, flags, dtype, None, reserved)
            if fo < self.fds or fo + 4096 > self.n:
                return m.RawHeader(t, bytes(buf[body:body + 24]))
            return m.PageData(gpa, mask, flags, dtype, buf[fo:fo + 4096], reserved)
        sec = _SECTIONS.get(t) or defs.section_of(t)
        if sec is None:
            return m.RawHeader(t, bytes(buf[body:body + length]))
        layout = defs.HEADER_LAYOUTS.get(t)
        h = None
        if (t in _HANDLED and (sec != Section.PLATFORM or t == HeaderType.SUPPORTED_PLATFORM)
                and length == layout.size):
            h = self._by_type[t](t, layout.st.unpack_from(buf, body), None, pos)
        return h if h is not None else m.RawHeader(t, bytes(buf[body:body + length]), sec)

    def replay_section(self, seq: LazyHeaders, walk, section: int) -> None:
        """The walk's events for one section of the parsed model (``walk.replay``):
        page headers read raw and coalesced into runs (regular ones in bulk),
        the others decoded as :meth:`decode_at` decodes them."""
        buf, n, fds = self.buf, self.n, self.fds
        offsets, index, copies = seq._offsets, seq._index, seq._copies
        end = 0  # bulk reads stop at the end of the section's last header
        if len(index):
            last = offsets[index[len(index) - 1]]
            end = min(getattr(self, "vh_end", 0), last + 8 + ((_TLV.unpack_from(buf, last)[1] + 7) & ~7))
        runs = Runs(walk, buf, end, n)
        page = runs.page
        unpack_tlv, unpack_pd = _TLV.unpack_from, _PAGE_DATA.unpack_from
        contiguous = isinstance(index, range)
        j, count = 0, len(index)
        while j < count:
            idx = index[j]
            off = offsets[idx]
            t, length = unpack_tlv(buf, off)
            if t == 0x302 and length == 24 and section == Section.DIRECTIVE:
                gpa, mask, fo, flags, dtype, _ = unpack_pd(buf, off + 8)
                if not fo or (fds <= fo and fo + 4096 <= n):
                    # bulk only where the model's next entries are the next headers
                    k = page(idx, j, gpa, mask, fo, flags, dtype, off if contiguous else -1, True)
                    j += 1 + k
                    continue
            runs.flush()
            same = copies.get(j, 0) if copies else 0
            walk.header(self.decode_at(off), HeaderAt(idx, j, section, off, 1 + same))
            j += 1 + same
        runs.flush()

    def data_at(self, file_offset: int, size: int, idx: int, off: int, what: str):
        """A view of ``size`` file-data bytes at ``file_offset`` (None if out of range)."""
        if file_offset < self.fds or file_offset + size > self.n:
            self.report("file-data-out-of-range",
                        f"{what}: 0x{size:x} bytes at file offset 0x{file_offset:x} are outside "
                        f"the file data section [0x{self.fds:x}, 0x{self.n:x})", idx, off)
            return None
        return self.buf[file_offset:file_offset + size]


    # ---------------------------------------------------------- decoders
    def decoders(self) -> dict:
        d = {
            HeaderType.SUPPORTED_PLATFORM: self.d_platform,
            HeaderType.GUEST_POLICY: self.d_guest_policy,
            HeaderType.RELOCATABLE_REGION: self.d_relocatable,
            HeaderType.PAGE_TABLE_RELOCATION_REGION: self.d_page_table,
            HeaderType.CCA_POLICY: self.d_cca_policy,
            HeaderType.PARAMETER_AREA: self.d_parameter_area,
            HeaderType.PAGE_DATA: self.d_page_data,
            HeaderType.PARAMETER_INSERT: self.d_parameter_insert,
            HeaderType.VP_CONTEXT: self.d_vp_context,
            HeaderType.REQUIRED_MEMORY: self.d_required_memory,
            HeaderType.SNP_ID_BLOCK: self.d_plain,
            HeaderType.ERROR_RANGE: self.d_error_range,
            HeaderType.VBS_MEASUREMENT: self.d_plain,
        }
        for t in defs.PARAMETER_TYPES:
            d[t] = self.d_plain
        return d

    def d_plain(self, t, v, idx, off):
        make = _PLAIN.get(t)
        if make is None:
            make = _PLAIN[t] = _plain_maker(t)
        return make(v)

    def d_platform(self, t, v, idx, off):
        mask, vtl, ptype, version, sgb = v
        h = m.SupportedPlatform(compatibility_mask=mask, platform_type=ptype,
                                platform_version=version, highest_vtl=vtl,
                                shared_gpa_boundary=sgb)
        if _popcount(mask) != 1:
            self.report("platform-mask-not-single-bit",
                        f"compatibility_mask 0x{mask:x} must have exactly one bit set", idx, off)
        if vtl not in defs.VALID_HIGHEST_VTLS:
            self.report("platform-vtl-invalid", f"highest_vtl {vtl} is neither 0 nor 2", idx, off)
        if ptype not in _PLATFORM_TYPES:
            self.report("platform-type-unknown", f"platform_type {ptype} is not defined", idx, off)
        else:
            if version != defs.PLATFORM_VERSION[ptype]:
                self.report("platform-version-invalid", f"{PlatformType(ptype).name} "
                            f"platform_version {version}, expected "
                            f"{defs.PLATFORM_VERSION[ptype]}", idx, off)
            if ptype in defs.PLATFORMS_NO_SHARED_GPA_BOUNDARY and sgb:
                self.report("platform-shared-gpa-boundary", f"{PlatformType(ptype).name} "
                            f"shared_gpa_boundary 0x{sgb:x} must be 0", idx, off)
        return h

    def d_guest_policy(self, t, v, idx, off):
        policy, mask, reserved = v
        if reserved:
            self.report("reserved-nonzero", f"GUEST_POLICY reserved 0x{reserved:x}", idx, off)
        return m.GuestPolicy(policy, mask, reserved)

    def d_relocatable(self, t, v, idx, off):
        h = m.RelocatableRegion(*v)
        if h.vtl not in defs.VALID_VTLS:
            self.report("vtl-invalid", f"RELOCATABLE_REGION vtl {h.vtl}", idx, off)
        if h.relocation_region_size % PAGE_SIZE_4K:
            self.report("size-unaligned", f"RELOCATABLE_REGION size "
                        f"0x{h.relocation_region_size:x} not 4 KiB aligned", idx, off)
        a = h.relocation_alignment
        if a == 0 or a % PAGE_SIZE_4K:
            self.report("relocation-alignment-invalid", f"relocation_alignment 0x{a:x} is not a "
                        "non-zero multiple of 4 KiB", idx, off)
        else:
            for name in ("relocation_region_gpa", "minimum_relocation_gpa",
                         "maximum_relocation_gpa"):
                value = getattr(h, name)
                if value % a:
                    self.report("relocation-address-unaligned", f"{name} 0x{value:x} not aligned "
                                f"to relocation_alignment 0x{a:x}", idx, off)
                    break
        return h

    def d_page_table(self, t, v, idx, off):
        mask, vp_index, vtl, reserved, gpa, size, used = v
        h = m.PageTableRelocation(mask, vp_index, vtl, gpa, size, used, reserved)
        if reserved:
            self.report("reserved-nonzero", f"PAGE_TABLE_RELOCATION reserved 0x{reserved:x}",
                        idx, off)
        if vtl not in defs.VALID_VTLS:
            self.report("vtl-invalid", f"PAGE_TABLE_RELOCATION vtl {vtl}", idx, off)
        if gpa % PAGE_SIZE_4K:
            self.report("gpa-unaligned", f"PAGE_TABLE_RELOCATION gpa 0x{gpa:x}", idx, off)
        for name, value in (("size", size), ("used_size", used)):
            if value % PAGE_SIZE_4K:
                self.report("size-unaligned", f"PAGE_TABLE_RELOCATION {name} 0x{value:x}",
                            idx, off)
        if used > size:
            self.report("page-table-used-size-exceeds", f"used_size 0x{used:x} above size "
                        f"0x{size:x}", idx, off)
        return h

    def d_cca_policy(self, t, v, idx, off):
        mask, reserved, zeroes, ones, hash_alg, lfa, reserved2 = v
        h = m.CcaPolicy(mask, zeroes, ones, hash_alg, lfa, reserved, reserved2)
        if reserved or any(reserved2):
            self.report("reserved-nonzero", "CCA_POLICY reserved fields not zero", idx, off)
        if zeroes & ones:
            self.report("cca-policy-ones-zeroes", f"bits 0x{zeroes & ones:x} required both zero "
                        "and one", idx, off)
        return h

    def d_parameter_area(self, t, v, idx, off):
        size, index, fo = v
        data = None
        if fo:
            data = self.data_at(fo, size, idx, off, "parameter area")
            if data is None:
                return None
        if size % PAGE_SIZE_4K:
            self.report("size-unaligned", f"PARAMETER_AREA number_of_bytes 0x{size:x}", idx, off)
        return m.ParameterArea(size, index, data)

    def check_page_data(self, gpa, flags, dtype, reserved, idx, off):
        if reserved:
            self.report("reserved-nonzero", f"PAGE_DATA reserved 0x{reserved:x}", idx, off)
        if gpa % PAGE_SIZE_4K:
            self.report("gpa-unaligned", f"PAGE_DATA gpa 0x{gpa:x}", idx, off)
        if dtype > 3:
            self.report("page-data-type-invalid", f"data_type {dtype}", idx, off)
        if flags & defs.PAGE_DATA_FLAGS_RESERVED:
            self.report("page-data-flags-reserved", f"flags 0x{flags:x}", idx, off)
        if flags & defs.PageDataFlags.IS_2MB_PAGE and gpa % PAGE_SIZE_2M:
            self.report("page-data-2mb-unaligned", f"2 MiB page at 0x{gpa:x}", idx, off)

    def d_page_data(self, t, v, idx, off):
        gpa, mask, fo, flags, dtype, reserved = v
        data = None
        if fo:
            data = self.data_at(fo, PAGE_SIZE_4K, idx, off, "page data")
            if data is None:
                return None
        self.check_page_data(gpa, flags, dtype, reserved, idx, off)
        return m.PageData(gpa, mask, flags, dtype, data, reserved)

    def d_parameter_insert(self, t, v, idx, off):
        h = m.ParameterInsert(*v)
        if h.gpa % PAGE_SIZE_4K:
            self.report("gpa-unaligned", f"PARAMETER_INSERT gpa 0x{h.gpa:x}", idx, off)
        return h

    def d_vp_context(self, t, v, idx, off):
        gpa, mask, fo, vp_index, reserved = v
        if reserved:
            self.report("vp-context-reserved-nonzero", f"reserved 0x{reserved:x}", idx, off)
        ptype = self.mask_map.get(mask)
        if ptype == PlatformType.VSM_ISOLATION:
            head = self.data_at(fo, 4, idx, off, "VBS VP context")
            if head is None:
                return None
            (count,) = _U32.unpack_from(head)
            regs = self.data_at(fo + 4, 32 * count, idx, off, "VBS VP context registers")
            if regs is None:
                return None
            vtls = set(bytes(regs[::32]))  # each register's first byte, sliced in C
            if count == 0:
                self.report("vbs-vp-context-invalid", "no registers", idx, off)
            elif len(vtls) > 1:
                self.report("vbs-vp-context-invalid", f"registers for several VTLs {sorted(vtls)}",
                            idx, off)
            elif vp_index != 0:
                self.report("vbs-vp-context-invalid", f"vp_index {vp_index}, only the BSP (0)",
                            idx, off)
            elif max(vtls) not in defs.VALID_VTLS:
                self.report("vtl-invalid", f"VBS register vtl {max(vtls)}", idx, off)
            data = self.buf[fo:fo + 4 + 32 * count]
        elif ptype in (PlatformType.SEV_SNP, PlatformType.SEV_ES):
            data = self.data_at(fo, PAGE_SIZE_4K, idx, off, "VMSA")
            if data is None:
                return None
            if gpa % PAGE_SIZE_4K:
                self.report("gpa-unaligned", f"VP_CONTEXT (VMSA) gpa 0x{gpa:x}", idx, off)
        elif ptype in (PlatformType.NATIVE, PlatformType.SEV, PlatformType.CCA):
            data = self.data_at(fo, PAGE_SIZE_4K, idx, off, "VP context")
            if data is None:
                return None
            size = CCA_CONTEXT_SIZE if ptype == PlatformType.CCA else NATIVE_CONTEXT_SIZE
            if any(data[size:]):
                self.report("vp-context-nonzero-tail", f"bytes after the {size}-byte "
                            f"{PlatformType(ptype).name} context are not zero", idx, off)
        else:
            what = (f"platform {PlatformType(ptype).name}" if ptype in _PLATFORM_TYPES
                    else "no single declared platform")
            self.report("vp-context-platform", f"compatibility_mask 0x{mask:x} names {what}",
                        idx, off)
            return None
        return m.VpContext(gpa, mask, vp_index, data, reserved)

    def d_required_memory(self, t, v, idx, off):
        gpa, mask, size, flags, reserved = v
        if reserved:
            self.report("reserved-nonzero", f"REQUIRED_MEMORY reserved 0x{reserved:x}", idx, off)
        if gpa % PAGE_SIZE_4K:
            self.report("gpa-unaligned", f"REQUIRED_MEMORY gpa 0x{gpa:x}", idx, off)
        if size % PAGE_SIZE_4K:
            self.report("size-unaligned", f"REQUIRED_MEMORY number_of_bytes 0x{size:x}", idx, off)
        if flags & defs.REQUIRED_MEMORY_FLAGS_RESERVED:
            self.report("required-memory-flags-reserved", f"flags 0x{flags:x}", idx, off)
        return m.RequiredMemory(gpa, mask, size, flags, reserved)

    def d_error_range(self, t, v, idx, off):
        h = m.ErrorRange(*v)
        if h.gpa % PAGE_SIZE_4K:
            self.report("gpa-unaligned", f"ERROR_RANGE gpa 0x{h.gpa:x}", idx, off)
        return h


class _Scanner(_Decoder):
    """The decoder with its reports on, plus the fixed header, the walk
    and the whole-file rules.  It keeps 4 bytes per header (its offset)
    and 4 per header the whole-file rules read (not page data), never the
    header objects."""

    def __init__(self, data, platform=None, strict: bool = False,
                 stop_first: bool = False, limit: int | None = MAX_VIOLATIONS,
                 consumers=()) -> None:
        mv = data if isinstance(data, memoryview) else memoryview(data)
        if mv.format != "B" or mv.ndim != 1:
            mv = mv.cast("B")
        super().__init__(mv, 0, {})  # fds: known once the fixed header is read
        # the walk's subscribers (harness.igvm.walk): fed as the headers go by
        self.events = Walk(consumers, buffer=data)
        self.platform = platform
        self.strict = strict
        self.stop_first = stop_first
        self.violations = Violations(limit=limit)
        self.limit = limit
        self.file = m.IgvmFile(buffer=data)
        self.offsets = array.array(OFFSET_CODE)  # every header's offset, in file order
        self.sections = (IndexBuilder(), IndexBuilder(), IndexBuilder())
        # per section, the file-order indices of the typed headers the
        # whole-file rules read (page data only in strict mode)
        self.entries = (array.array(OFFSET_CODE), array.array(OFFSET_CODE),
                        array.array(OFFSET_CODE))
        # the relocation and page table regions, as the walk decodes them
        # (29 bytes a region): the overlap and VP-context rules read these
        self.regions = _Regions()

    def finish(self) -> None:
        """Hand the model its lazy sequences (after the walk, whatever stopped it)."""
        f = self.file
        silent = self.silent = self.quiet if hasattr(self, "quiet") else _Decoder(
            self.buf, self.fds, self.mask_map)
        silent.vh_end = getattr(self, "vho", 0) + getattr(self, "vhs", 0)
        decode = silent.decode_at
        f.offsets = self.offsets
        f.platforms, f.initializations, f.directives = (
            LazyHeaders(decode, self.offsets, sec.indices(), sec.copies, self.buf,
                        silent.replay_section)
            for sec in self.sections)

    # ---------------------------------------------------------- reporting
    def report(self, rule: str, message: str, idx: int | None = None,
               off: int | None = None) -> None:
        if not self.strict and rule in STRICT_RULES:
            return
        v = self.violations
        if self.limit is not None and len(v) >= self.limit:
            # past the limit: counted, not kept (4 million bad headers must
            # not become 4 million objects and lines); the scan goes on
            if v.first_not_shown is None:
                v.first_not_shown = (idx, off)
            v.not_shown += 1
            return
        v.append(Violation(rule, message, idx, off))
        if self.stop_first:
            raise _Stop

    def fatal(self, rule: str, message: str, idx=None, off=None) -> None:
        self.report(rule, message, idx, off)
        raise _Stop

    def d_relocatable(self, t, v, idx, off):
        h = super().d_relocatable(t, v, idx, off)
        self.regions.add(idx, h.compatibility_mask, h.relocation_region_gpa,
                         h.relocation_region_size, h.vp_index, h.vtl)
        return h

    def d_page_table(self, t, v, idx, off):
        h = super().d_page_table(t, v, idx, off)
        self.regions.add(idx, h.compatibility_mask, h.gpa, h.size, h.vp_index, h.vtl)
        return h

    def d_platform(self, t, v, idx, off):
        h = super().d_platform(t, v, idx, off)
        self.mask_map[v[0]] = v[2]  # mask -> platform type, for the VP contexts after it
        self.events.add_platform(h)
        return h

    # ------------------------------------------------------------- driver
    def run(self) -> None:
        try:
            self.fixed_header()
            self.walk()
        except _Stop:
            self.finish()
            return
        self.finish()
        self.events.header_count = len(self.offsets)
        self.events.end()
        try:
            self.whole_file()
        except _Stop:
            return

    # ------------------------------------------------------- fixed header
    def fixed_header(self) -> None:
        buf, n = self.buf, self.n
        if n < defs.FIXED_HEADER_V1.size:
            self.fatal("file-too-small", f"{n} bytes, the fixed header needs "
                       f"{defs.FIXED_HEADER_V1.size}", None, 0)
        magic, version, vho, vhs, total, checksum = defs.FIXED_HEADER_V1.st.unpack_from(buf, 0)
        if magic != IGVM_MAGIC:
            self.fatal("bad-magic", f"magic 0x{magic:08x}, expected 0x{IGVM_MAGIC:08x} ('IGVM')",
                       None, 0)
        f = self.file
        if version == defs.FORMAT_VERSION_1:
            fixed = defs.FIXED_HEADER_V1
        elif version == defs.FORMAT_VERSION_2:
            fixed = defs.FIXED_HEADER_V2
            if n < fixed.size:
                self.fatal("file-too-small", f"{n} bytes, the v2 fixed header needs {fixed.size}",
                           None, 0)
            arch, page_size = struct.unpack_from("<II", buf, 24)
            if arch not in (Architecture.X64, Architecture.AARCH64):
                self.fatal("bad-architecture", f"architecture {arch} is neither X64 (0) "
                           "nor AARCH64 (1)", None, 24)
            if page_size != PAGE_SIZE_4K:
                self.fatal("unsupported-page-size", f"page_size 0x{page_size:x}, only 0x1000 "
                           "is supported", None, 28)
            f.architecture = Architecture(arch)
            f.page_size = page_size
        else:
            self.fatal("unsupported-format-version", f"format_version {version}, expected 1 or 2",
                       None, 4)
        f.revision = version
        self.fixed_size = fixed.size
        if total != n:
            self.fatal("total-size-mismatch", f"header says {total} bytes, file has {n}", None, 16)
        if vho >= n:
            self.fatal("variable-header-offset-out-of-range",
                       f"variable_header_offset 0x{vho:x} is not below the file size 0x{n:x}",
                       None, 8)
        if vho + vhs >= n:
            self.fatal("variable-header-size-out-of-range",
                       f"variable headers end at 0x{vho + vhs:x}, not below the file size "
                       f"0x{n:x} (no file data section)", None, 12)
        if vho < fixed.size or vho % 8:
            self.report("variable-header-offset-invalid",
                        f"variable_header_offset 0x{vho:x} must be >= 0x{fixed.size:x} "
                        "and 8-byte aligned", None, 8)
        head = bytearray(buf[:fixed.size])
        head[defs.CHECKSUM_OFFSET:defs.CHECKSUM_OFFSET + 4] = bytes(4)
        computed = zlib.crc32(buf[vho:vho + vhs], zlib.crc32(head))
        if computed != checksum:
            self.report("checksum-mismatch",
                        f"header says 0x{checksum:08x}, computed 0x{computed:08x}", None, 20)
        self.vho, self.vhs = vho, vhs
        self.fds = vho + vhs
        self.header_ok = True
        ev = self.events
        ev.revision, ev.architecture, ev.page_size = f.revision, f.architecture, f.page_size
        # decodes headers for the walk's consumers (and later the model) without reporting
        self.quiet = _Decoder(self.buf, self.fds, self.mask_map)

    # -------------------------------------------------------------- walk
    def walk(self) -> None:
        """The one pass over the variable headers: each header's own rules,
        the model's index (4 bytes a header), and the walk's events for its
        consumers (harness.igvm.walk): page data in runs, read in bulk where
        a run is regular, every other header decoded once."""
        buf = self.buf
        pos, end = self.vho, self.vho + self.vhs
        stage = Section.PLATFORM
        sections = self.sections
        entries = self.entries
        report = self.report
        unpack_tlv = _TLV.unpack_from
        unpack_pd = _PAGE_DATA.unpack_from
        decoders = self._by_type
        strict = self.strict
        fds, n = self.fds, self.n
        DIRECTIVE = Section.DIRECTIVE
        PLATFORM = Section.PLATFORM
        directives = sections[DIRECTIVE]
        add_dir = directives.add
        add_off = self.offsets.append
        section_of = defs.section_of
        known_section = _SECTIONS.get
        plain = self.d_plain
        events = self.events
        consumers = events.consumers  # grows only in platforms_done
        quiet = self.quiet
        runs = Runs(events, buf, end, n)
        page = runs.page

        def position() -> int:  # of the page just added, among the directives
            return len(directives) - 1

        idx = -1
        while pos < end:
            idx += 1
            if end - pos < 8:
                self.fatal("header-truncated", f"{end - pos} bytes left in the variable header "
                           "section, a header needs 8", idx, pos)
            t, length = unpack_tlv(buf, pos)
            body = pos + 8
            nxt = body + ((length + 7) & ~7)
            if nxt > end:
                self.fatal("header-truncated", f"header type 0x{t:x} length {length} runs past "
                           f"the variable header section end 0x{end:x}", idx, pos)
            add_off(pos)
            # fast path: the common page data header, checked from its values
            # (no object: no whole-file rule concerns page data)
            if t == 0x302 and length == 24 and stage is DIRECTIVE:
                gpa, mask, fo, flags, dtype, reserved = unpack_pd(buf, body)
                if fo and (fo < fds or fo + 4096 > n):
                    self.data_at(fo, 4096, idx, pos, "page data")
                    add_dir(idx)
                    if consumers:  # kept raw, as the model keeps it
                        runs.flush()
                        events.header(quiet.decode_at(pos),
                                      HeaderAt(idx, len(directives) - 1, DIRECTIVE, pos))
                    pos = nxt
                    continue
                clean = not (reserved or gpa & 0xFFF or dtype > 3)
                if strict or not clean:
                    self.check_page_data(gpa, flags, dtype, reserved, idx, pos)
                    if strict:
                        entries[DIRECTIVE].append(idx)
                        clean = clean and not (flags & defs.PAGE_DATA_FLAGS_RESERVED or (
                            flags & 1 and gpa % PAGE_SIZE_2M))
                add_dir(idx)
                k = page(idx, position, gpa, mask, fo, flags, dtype, pos, clean)
                if k:  # k more headers continue this one regularly: valid, read in bulk
                    stop = nxt + k * PAGE_HEADER_SIZE
                    self.offsets.extend(range(nxt, stop, PAGE_HEADER_SIZE))
                    directives.add_range(idx + 1, k)
                    if strict:
                        entries[DIRECTIVE].extend(range(idx + 1, idx + 1 + k))
                    idx += k
                    nxt = stop
                pos = nxt
                continue
            sec = known_section(t) or section_of(t)
            v = self.violations
            before = v.not_shown
            past = self.limit is not None and len(v) >= self.limit
            # past the limit, with where that was noted: only counted, so not worded
            count_only = past and v.first_not_shown is not None
            h = values = None
            if sec is None:
                if count_only:
                    v.not_shown += 1
                else:
                    report("unknown-header-type", f"type 0x{t:x} is in no section range"
                           + (" (optional bit set; the reference parser rejects it)"
                              if t & OPTIONAL_BIT else ""), idx, pos)
                # kept where a RawHeader of this type says it belongs
                sec = max(stage, section_of(t & ~OPTIONAL_BIT) or DIRECTIVE)
                raw = True
            else:
                if sec < stage:
                    report("section-order", f"{_name(t)} ({sec.name.lower()}) after a "
                           f"{stage.name.lower()} header", idx, pos)
                else:
                    stage = sec
                if strict and nxt > body + length and any(buf[body + length:nxt]):
                    report("header-padding-nonzero", f"padding after {_name(t)} is not zero",
                           idx, pos)
                layout = defs.HEADER_LAYOUTS.get(t)
                raw = False
                if t not in _HANDLED or (sec == PLATFORM
                                         and t != HeaderType.SUPPORTED_PLATFORM):
                    if count_only:
                        v.not_shown += 1
                    else:
                        report("unknown-header-type", f"type 0x{t:x} ({_name(t)}) is not "
                               "handled by the reference parser", idx, pos)
                    raw = True
                elif length != layout.size:
                    report("header-length-mismatch", f"{_name(t)} length {length}, the structure "
                           f"has {layout.size} bytes", idx, pos)
                    raw = True
                elif decoders[t] == plain:  # nothing to check: typed without building it
                    entries[sec].append(idx)
                    if consumers:
                        h = plain(t, layout.st.unpack_from(buf, body), idx, pos)
                else:
                    values = layout.st.unpack_from(buf, body)
                    h = decoders[t](t, values, idx, pos)
                    if h is not None:
                        entries[sec].append(idx)
            sections[sec].add(idx)
            copies = 0
            if raw and past and nxt < end:
                # Past the limit, the byte-identical copies that follow a header
                # kept raw are each the same violations again (a raw header
                # changes no state but the stage, which its copies leave as it
                # is): counted at memcmp speed, not walked.
                copies = _copies(buf, pos, nxt, end)
                if copies:
                    step = nxt - pos
                    v.not_shown += copies * (v.not_shown - before)
                    self.offsets.extend(range(nxt, nxt + copies * step, step))
                    sections[sec].add_copies(idx + 1, copies)
            if consumers:
                if sec != PLATFORM:
                    events.finish_platforms()
                if t == 0x302 and h is not None:  # page data met off the fast path
                    gpa, mask, fo, flags, dtype, _ = values
                    page(idx, position, gpa, mask, fo, flags, dtype)
                else:
                    runs.flush()
                    events.header(h if h is not None else quiet.decode_at(pos),
                                  HeaderAt(idx, len(sections[sec]) - 1 - copies, sec, pos,
                                           1 + copies))
            if copies:
                idx += copies
                nxt += copies * (nxt - pos)
            pos = nxt
        runs.flush()

    # ------------------------------------------------------- whole file
    def whole_file(self) -> None:
        f = self.file
        report = self.report
        arch = f.architecture
        offsets = self.offsets
        decode = self.silent.decode_at  # the walk reported each header's own violations

        def read(section):
            """(header, index, offset) of the section's entries, decoded one at a time."""
            for idx in self.entries[section]:
                off = offsets[idx]
                yield decode(off), idx, off
        # validate_platform_headers
        seen: dict[int, int] = {}
        declared = 0
        first_platform = None
        for h, idx, off in read(Section.PLATFORM):
            if not isinstance(h, m.SupportedPlatform):
                continue
            if first_platform is None:
                first_platform = idx
            pt = h.platform_type
            if pt in _PLATFORM_TYPES and pt not in defs.PLATFORMS_FOR_ARCH[arch]:
                report("platform-arch-mismatch", f"{PlatformType(pt).name} is not supported on "
                       f"{Architecture(arch).name}", idx, off)
            if pt in seen:
                report("platform-duplicate", f"second platform header of type {_pname(pt)}",
                       idx, off)
            seen[pt] = idx
            if h.compatibility_mask & declared:
                report("platform-mask-duplicate", f"mask 0x{h.compatibility_mask:x} reuses a "
                       "declared bit", idx, off)
            declared |= h.compatibility_mask
        if not any(True for _ in m.of_class(f.platforms, m.SupportedPlatform)):
            report("no-platform", "the file declares no supported platform", None,
                   self.vho)
        filter_mask = 0xFFFFFFFF
        if self.platform is not None:
            p = f.platform(self.platform)
            if p is not None:
                filter_mask = p.compatibility_mask

        # validate_initialization_headers
        page_table_masks = 0
        pt_regions: list[tuple[int, int, int]] = []
        strict = self.strict

        rg = self.regions.only(filter_mask)
        overlaps = Overlaps(rg.masks, rg.starts, rg.ends, keep=self.limit)
        region = -1  # the regions' order above: the loop below meets them in it

        def overlap(mask, start, size, idx, off):
            nonlocal region
            region += 1
            if not overlaps.hit[region]:
                return
            hit = overlaps.first(region)
            if hit is None:  # past what the violation limit can list: counted only
                report("relocation-regions-overlap", "", idx, off)
                return
            bit, s, e = hit
            report("relocation-regions-overlap", f"region [0x{start:x}, 0x{start + size:x}) "
                   f"overlaps [0x{s:x}, 0x{e:x}) for mask 0x{bit:x}", idx, off)

        for h, idx, off in itertools.chain(read(Section.INITIALIZATION),
                                           read(Section.DIRECTIVE) if strict else ()):
            mask = getattr(h, "compatibility_mask", None)
            if h.SECTION == Section.PLATFORM:
                continue
            if strict and mask is not None and (mask == 0 or mask & ~declared):
                report("mask-undeclared", f"{_name(h.TYPE)} compatibility_mask 0x{mask:x}, "
                       f"declared platforms 0x{declared:x}", idx, off)
            if h.SECTION != Section.INITIALIZATION:
                continue
            if mask is not None and not mask & filter_mask:
                continue
            if isinstance(h, m.CcaPolicy):
                if arch != Architecture.AARCH64:
                    report("header-arch-mismatch", "CCA_POLICY in an X64 file", idx, off)
                for bit in _bits(mask):
                    if self.mask_map.get(bit) != PlatformType.CCA:
                        report("cca-policy-mask", f"mask bit 0x{bit:x} is not a CCA platform",
                               idx, off)
                        break
            elif isinstance(h, m.PageTableRelocation):
                if mask & page_table_masks:
                    report("page-table-relocation-duplicate", f"mask 0x{mask:x} already has one",
                           idx, off)
                elif mask:
                    # a region for mask bits none had: at most 32 of them (a
                    # duplicate or a zero mask would make the insert check quadratic)
                    pt_regions.append((mask, h.gpa, h.size))
                page_table_masks |= mask
                overlap(mask, h.gpa, h.size, idx, off)

            elif isinstance(h, m.RelocatableRegion):
                overlap(mask, h.relocation_region_gpa, h.relocation_region_size, idx, off)

        # validate_directive_headers
        ALLOCATED, INSERTED = 1, 2
        areas: dict[int, int] = {}
        vbs_covered: dict[int, int] = {}  # VTL -> mask bits with a VBS VP context
        for h, idx, off in read(Section.DIRECTIVE):
            if h.SECTION != Section.DIRECTIVE:
                continue
            t = h.TYPE
            if t == HeaderType.PAGE_DATA:  # no whole-file rule concerns page data
                continue
            mask = getattr(h, "compatibility_mask", None)
            if mask is not None and not mask & filter_mask:
                continue
            if t == HeaderType.PARAMETER_AREA:
                if h.parameter_area_index in areas:
                    report("parameter-area-index-reused", f"index {h.parameter_area_index}",
                           idx, off)
                else:
                    areas[h.parameter_area_index] = ALLOCATED
            elif t in defs.PARAMETER_TYPES:
                state = areas.get(h.parameter_area_index)
                if state is None:
                    report("parameter-area-undeclared", f"{_name(t)} names area "
                           f"{h.parameter_area_index}, not declared before", idx, off)
                elif state == INSERTED:
                    report("parameter-area-inserted", f"{_name(t)} names area "
                           f"{h.parameter_area_index}, already inserted", idx, off)
            elif t == HeaderType.PARAMETER_INSERT:
                state = areas.get(h.parameter_area_index)
                if state is None:
                    report("parameter-area-undeclared", f"insert of area "
                           f"{h.parameter_area_index}, not declared before", idx, off)
                elif state == INSERTED:
                    report("parameter-area-inserted", f"area {h.parameter_area_index} "
                           "inserted twice", idx, off)
                else:
                    areas[h.parameter_area_index] = INSERTED
                for pmask, gpa, size in pt_regions:
                    if pmask & mask and gpa <= h.gpa < gpa + size:
                        report("parameter-insert-in-page-table", f"insert at 0x{h.gpa:x} inside "
                               f"the page table region at 0x{gpa:x}", idx, off)
                        break
            elif t == HeaderType.VP_CONTEXT:
                ptype = self.mask_map.get(mask)
                if ptype == PlatformType.VSM_ISOLATION and h.data is not None and len(h.data) > 4:
                    vtl = h.data[4]  # covers every relocation ident of VP 0, this VTL, a shared bit
                    vbs_covered[vtl] = vbs_covered.get(vtl, 0) | mask
                elif ptype in (PlatformType.NATIVE, PlatformType.SEV) and arch != Architecture.X64:
                    report("header-arch-mismatch", "x64 native VP context in an AARCH64 file",
                           idx, off)
                elif ptype == PlatformType.CCA and arch != Architecture.AARCH64:
                    report("header-arch-mismatch", "CCA VP context in an X64 file", idx, off)
        # every relocation header's (VP, VTL) needs a VBS VP context
        for k in range(len(rg.masks)):
            mask, vp, vtl = rg.masks[k], rg.vps[k], rg.vtls[k]
            if vtl not in defs.VALID_VTLS:
                continue  # already rejected as vtl-invalid
            if vp == 0 and mask & vbs_covered.get(vtl, 0):
                continue
            idx = rg.idxs[k]
            report("no-matching-vp-context", f"no VBS VP context for VP {vp} VTL {vtl} "
                   f"(mask 0x{mask:x})", idx, offsets[idx])
            break


class _Regions:
    """The relocation and page table regions of a file, in header order, as
    arrays (29 bytes a region instead of a header object and a tuple)."""

    __slots__ = ("idxs", "masks", "starts", "ends", "vps", "vtls")

    def __init__(self) -> None:
        self.idxs = array.array(OFFSET_CODE)
        self.masks = array.array(OFFSET_CODE)
        self.starts = array.array("Q")
        self.ends = array.array("Q")
        self.vps = array.array("H")  # vp_index is a u16
        self.vtls = array.array("B")

    def add(self, idx: int, mask: int, start: int, size: int, vp: int, vtl: int) -> None:
        self.idxs.append(idx)
        self.masks.append(mask)
        self.starts.append(start)
        self.ends.append(min(start + size, _U64_MAX))
        self.vps.append(vp)
        self.vtls.append(vtl)

    def only(self, mask: int) -> "_Regions":
        """The regions whose mask intersects ``mask`` (all of them for 0xFFFFFFFF)."""
        if all(m & mask for m in self.masks):
            return self
        out = _Regions()
        for k in range(len(self.masks)):
            if self.masks[k] & mask:
                out.add(self.idxs[k], self.masks[k], self.starts[k],
                        self.ends[k] - self.starts[k], self.vps[k], self.vtls[k])
        return out


_COPIES_CHUNK = 1 << 20


def _copies(buf, pos: int, nxt: int, end: int) -> int:
    """How many byte-identical copies of ``buf[pos:nxt]`` follow it, before ``end``."""
    step = nxt - pos
    most = (end - nxt) // step
    one = bytes(buf[pos:nxt])
    have = 0  # copies known to follow
    k = 1
    cap = max(1, _COPIES_CHUNK // step)  # the pattern bytes compared at once stay small
    while have < most:  # doubling, then halving: O(bytes) comparisons in C
        k = min(k, most - have, cap)
        at = nxt + have * step
        if buf[at:at + k * step] == one * k:
            have += k
            k *= 2
        elif k == 1:
            break
        else:
            k //= 2
    return have


#: Region ends are kept in u64 arrays; an end past 2^64 (a gpa near the top
#: plus a size) is clamped, which only loses an overlap with a region that
#: starts at 2^64 - 1 itself (the reference computes ``gpa + size - 1`` in u64).
_U64_MAX = (1 << 64) - 1


_SORT_CHUNK = 1 << 16


def _sorted_u64(values) -> array.array:
    """``array('Q', sorted(values))`` without a Python int per value alive
    at once: sorted in chunks of 64 Ki, merged (a list of 600,000 large ints
    is 24 MB, a u64 array 4.8)."""
    chunks, part = [], []
    for v in values:
        part.append(v)
        if len(part) == _SORT_CHUNK:
            part.sort()
            chunks.append(array.array("Q", part))
            part = []
    part.sort()
    if not chunks:
        return array.array("Q", part)
    chunks.append(array.array("Q", part))
    del part
    import heapq  # only files with many relocation regions come here (start-up: tests/cli)

    return array.array("Q", heapq.merge(*chunks))


class Overlaps:
    """Which relocation regions overlap a region of an earlier header, in
    O(n log n) time and ~45 bytes per region.

    Regions are given in header order (``masks``, ``starts``, ``ends``:
    arrays).  For each compatibility-mask bit, lowest first, in which the
    regions are not simply disjoint, the regions of that bit are taken in
    header order and each asks a Fenwick tree of
    prefix maxima, over the sorted starts, for the largest end among the
    earlier regions that start before its end: it overlaps one of them
    exactly when that end lies past its start.  ``hit[i]`` says region
    ``i`` overlaps an earlier one; :meth:`first` gives the lowest such bit
    and the earlier region's range, kept for the ``keep`` lowest regions
    only (those are the only ones the violation limit can list).  Empty
    regions overlap nothing."""

    def __init__(self, masks, starts, ends, keep: int | None = None) -> None:
        n = len(masks)
        self.hit = bytearray(n)
        self._first: dict[int, tuple[int, int, int]] = {}
        self._keep = keep
        every = 0
        for mask in masks:
            every |= mask
        for bit in _bits(every):
            self._sweep(bit, masks, starts, ends)

    def first(self, i: int) -> tuple[int, int, int] | None:
        return self._first.get(i)

    def _note(self, i: int, detail: tuple[int, int, int]) -> None:
        self.hit[i] = 1
        first, keep = self._first, self._keep
        if keep is None or len(first) < keep:
            first[i] = detail
        elif keep and i < max(first):  # bits come lowest first: the first hit is the lowest bit
            del first[max(first)]
            first[i] = detail

    def _sweep(self, bit: int, masks, starts, ends) -> None:
        members = array.array(OFFSET_CODE, (i for i in range(len(masks))
                                            if masks[i] & bit and ends[i] > starts[i]))
        if len(members) < 2:
            return
        coords = _sorted_u64(starts[i] for i in members)
        # Disjoint exactly when each sorted end is at most the next sorted
        # start (at most one region then covers any point): the common, valid
        # case costs two sorts and no tree.
        sorted_ends = _sorted_u64(ends[i] for i in members)
        if all(e <= s for e, s in zip(sorted_ends, itertools.islice(coords, 1, None))):
            return
        del sorted_ends
        import bisect  # only overlapping regions come here (start-up: tests/cli)

        size = len(coords)
        best_end = array.array("Q", bytes(8 * (size + 1)))  # Fenwick tree, 1-based
        best_who = array.array(OFFSET_CODE, bytes(4 * (size + 1)))
        hit = self.hit
        for i in members:
            s, e = starts[i], ends[i]
            j = bisect.bisect_left(coords, e)  # earlier regions starting before e
            top = who = 0
            while j:
                if best_end[j] > top:
                    top, who = best_end[j], best_who[j]
                j &= j - 1
            if top > s and not hit[i]:
                w = who - 1
                self._note(i, (bit, starts[w], ends[w]))
            j = bisect.bisect_left(coords, s) + 1
            while j <= size:
                if e > best_end[j]:
                    best_end[j], best_who[j] = e, i + 1
                j += j & -j


def _first_overlaps(regions: list[tuple[int, int, int, int]]) -> dict[int, tuple[int, int, int]]:
    """``(mask, start, end, header_index)`` in header order -> ``header_index
    -> (bit, start, end of an earlier region it overlaps)`` (the lowest bit)."""
    regions = sorted(regions, key=lambda r: r[3])
    o = Overlaps(array.array(OFFSET_CODE, (r[0] for r in regions)),
                 array.array("Q", (r[1] for r in regions)),
                 array.array("Q", (min(r[2], _U64_MAX) for r in regions)))
    return {regions[i][3]: o.first(i) for i in range(len(regions)) if o.hit[i]}


_NAMES = {int(t): t.name for t in HeaderType}


def _name(t: int) -> str:
    return _NAMES.get(t) or f"0x{t:x}"


def _pname(t: int) -> str:
    try:
        return PlatformType(t).name
    except ValueError:
        return str(t)


def scan(data, platform=None, strict: bool = False, stop_first: bool = False,
         limit: int | None = MAX_VIOLATIONS, consumers=()):
    """Run the scanner: ``(IgvmFile, Violations)``.

    ``consumers`` (:class:`harness.igvm.walk.Consumer`) subscribe to the
    scan's walk: they see every header in the same pass that validates it
    (their ``end`` hook runs once the whole variable-header section was
    read; a scan stopped early -- ``stop_first``, an unreadable header --
    does not call it).

    At most ``limit`` violations are kept (None: no limit); the scan still
    reads the whole file and counts the rest (``violations.not_shown``), so
    a file of millions of bad headers costs the first ``limit`` objects and
    a counter, in time linear in the file.  The model's header sequences
    are lazy (:mod:`harness.igvm.lazy`): 4 bytes per header.

    The model is as complete as the bytes allowed (headers that could not be
    decoded are ``RawHeader``); it is None when the fixed header is unusable
    (any fixed-header rule but the checksum and the strict offset rule).
    """
    s = _Scanner(data, platform=platform, strict=strict, stop_first=stop_first, limit=limit,
                 consumers=consumers)
    # Header objects are short-lived now, but the decoders' bound methods
    # and the tuples churn: the cyclic GC would only rescan them.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        s.run()
    finally:
        # the scanner's table of its own bound methods is a reference cycle:
        # break it, so that its arrays go now, not at some later collection
        s._by_type = None
        if gc_was_enabled:
            gc.enable()
    usable = getattr(s, "header_ok", False)
    return (s.file if usable else None), s.violations


def parse(data, check: bool = True, source: str | None = None) -> m.IgvmFile:
    """Bytes (or memoryview / mmap) -> :class:`IgvmFile`.

    With ``check`` (the default) the file must pass every rule the reference
    parser applies; the first violation raises :class:`IgvmFormatError`.
    Without it only a readable fixed header is required, and headers that
    cannot be decoded are kept as :class:`RawHeader` (for ``inspect``).
    """
    f, violations = scan(data, stop_first=check)
    if check and violations:
        raise IgvmFormatError.from_violation(violations[0], source)
    if f is None:
        v = violations[0]
        raise IgvmFormatError.from_violation(v, source)
    return f


def load(path, check: bool = True) -> m.IgvmFile:
    """Parse the file at ``path`` (memory-mapped: page data stays in the
    page cache, the model holds views into it)."""
    return parse(read(path), check=check, source=os.fspath(path))
