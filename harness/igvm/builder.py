"""Build IGVM files: a small imperative builder and the model serialiser.

Layout choices (all deterministic, so ``serialize(parse(b)) == b`` for any
file this module wrote):

* fixed header (24 bytes for format version 1, 32 for version 2), then the
  variable headers, each padded with zeros to 8 bytes, then file data;
* file data is appended in header order and shared between headers with
  identical contents (as the reference ``FileDataSerializer`` does);
* page data, VP-context data and parameter-area data are zero-padded to the
  size the reference parser reads (a page, a page, ``number_of_bytes``),
  except VBS VP contexts (VSM platform), read by register count;
  page data of ``None``/empty is written as ``file_offset`` 0 (zero page);
* the reference parser rejects a file whose file-data section is empty
  (``variable_header_offset + variable_header_size`` must be below
  ``total_file_size``), so when nothing references file data 8 zero bytes
  are appended.
"""

from __future__ import annotations

import zlib

from harness.errors import HarnessError
from harness.igvm import defs
from harness.igvm.defs import (
    Architecture, HeaderType, PageDataType, PlatformType, Section,
    PAGE_SIZE_4K, PAGE_SIZE_2M, FORMAT_VERSION_1, FORMAT_VERSION_2,
)
from harness.igvm import model as m

_ZERO_PAGE = bytes(PAGE_SIZE_4K)


class BuildError(HarnessError):
    """The builder was asked for something it cannot encode."""

    exit_code = 2


def _as_bytes(data) -> bytes:
    if data is None:
        return b""
    if isinstance(data, bytes):
        return data
    return bytes(data)


def _padded(data, size: int, what: str) -> bytes:
    if (isinstance(data, memoryview) and data.readonly and len(data) == size
            and data.format == "B" and data.contiguous):
        return data  # hashable and joinable as is: no copy
    raw = _as_bytes(data)
    if len(raw) > size:
        raise BuildError(f"{what}: {len(raw)} bytes do not fit in 0x{size:x}")
    if len(raw) < size:
        raw = raw + bytes(size - len(raw))
    return raw


class _FileData:
    """Accumulates file data, sharing identical blobs."""

    __slots__ = ("start", "chunks", "size", "seen")

    def __init__(self, start: int) -> None:
        self.start = start
        self.chunks: list = []
        self.size = 0
        self.seen: dict[bytes, int] = {}

    def add(self, blob: bytes) -> int:
        off = self.seen.get(blob)
        if off is not None:
            return off
        off = self.start + self.size
        self.seen[blob] = off
        self.chunks.append(blob)
        self.size += len(blob)
        return off


def _body(h: m.Header, fd: _FileData, vsm_masks: frozenset = frozenset()) -> tuple[int, bytes]:
    """Encode one header: (type, body without padding)."""
    if isinstance(h, m.RawHeader):
        return h.type, _as_bytes(h.body)
    t = h.TYPE
    layout = defs.HEADER_LAYOUTS[t]
    if isinstance(h, m.PageData):
        if h.data is None or len(h.data) == 0:
            off = 0
        else:
            off = fd.add(_padded(h.data, PAGE_SIZE_4K, f"page data at 0x{h.gpa:x}"))
        return t, layout.st.pack(h.gpa, h.compatibility_mask, off, int(h.flags),
                                 int(h.data_type), h.reserved)
    if isinstance(h, m.VpContext):
        if h.data is None:
            off = 0
        elif h.compatibility_mask in vsm_masks:
            # VBS: VbsVpContextHeader + registers, read by count, not padded
            off = fd.add(_as_bytes(h.data))
        else:
            # VMSA / native / CCA contexts are read as one full page
            off = fd.add(_padded(h.data, PAGE_SIZE_4K, "VP context"))
        return t, layout.st.pack(h.gpa, h.compatibility_mask, off, h.vp_index, h.reserved)
    if isinstance(h, m.ParameterArea):
        if h.initial_data is None or len(h.initial_data) == 0:
            off = 0
        else:
            off = fd.add(_padded(h.initial_data, h.number_of_bytes, "parameter area data"))
        return t, layout.st.pack(h.number_of_bytes, h.parameter_area_index, off)
    if isinstance(h, (m.CorimDocument, m.CorimSignature)):
        raw = _as_bytes(h.data)
        off = fd.add(raw) if raw else 0
        return (t | defs.OPTIONAL_BIT if h.optional else t,
                layout.st.pack(h.compatibility_mask, off, len(raw), h.reserved))
    values = []
    for name in layout.fields:
        v = getattr(h, name)
        values.append(bytes(v) if isinstance(v, (bytes, bytearray, memoryview)) else int(v))
    return t, layout.st.pack(*values)


def _variable_header(t: int, body: bytes) -> bytes:
    pad = (-len(body)) % 8
    return defs.VARIABLE_HEADER.st.pack(t, len(body)) + body + bytes(pad)


def serialize(f: m.IgvmFile, variable_header_offset: int | None = None) -> bytes:
    """Encode a model as an IGVM file (see the module docstring for layout).

    ``variable_header_offset`` places the variable headers further into the
    file (zero bytes in between); negative fixtures use it."""
    if f.revision == FORMAT_VERSION_1:
        fixed = defs.FIXED_HEADER_V1
    elif f.revision == FORMAT_VERSION_2:
        fixed = defs.FIXED_HEADER_V2
    else:
        raise BuildError(f"cannot build format version {f.revision}")
    headers = list(f.headers())
    # Sizes first: file data starts right after the variable headers.
    vh_size = 0
    for h in headers:
        if isinstance(h, m.RawHeader):
            blen = len(h.body)
        else:
            blen = defs.HEADER_SIZES[h.TYPE]
        vh_size += 8 + defs.align_up(blen)
    vho = fixed.size if variable_header_offset is None else variable_header_offset
    if vho < fixed.size:
        raise BuildError(f"variable_header_offset {vho} overlaps the fixed header")
    fd = _FileData(vho + vh_size)
    vsm = frozenset(p.compatibility_mask for p in f.platforms
                    if isinstance(p, m.SupportedPlatform)
                    and p.platform_type == PlatformType.VSM_ISOLATION)
    parts = []
    for h in headers:
        t, body = _body(h, fd, vsm)
        parts.append(_variable_header(t, body))
    vh = b"".join(parts)
    if len(vh) != vh_size:  # pragma: no cover - internal consistency
        raise BuildError("variable header size mismatch")
    if fd.size == 0:
        fd.chunks.append(bytes(8))
        fd.size = 8
    total = vho + vh_size + fd.size
    if total > 0xFFFFFFFF:
        raise BuildError(f"file of {total} bytes exceeds the 4 GiB IGVM limit")
    values = dict(magic=defs.IGVM_MAGIC, format_version=f.revision,
                  variable_header_offset=vho, variable_header_size=vh_size,
                  total_file_size=total, checksum=0,
                  architecture=int(f.architecture), page_size=f.page_size)
    head = fixed.pack(**values)
    crc = zlib.crc32(vh, zlib.crc32(head))
    values["checksum"] = crc
    head = fixed.pack(**values)
    return b"".join([head, bytes(vho - fixed.size), vh, *fd.chunks])


class IgvmBuilder:
    """Imperative construction of an IGVM file.

    ``mask=None`` on any directive means "every platform declared so far".
    """

    def __init__(self, revision: int = FORMAT_VERSION_1,
                 architecture: int = Architecture.X64,
                 page_size: int = PAGE_SIZE_4K) -> None:
        self._file = m.IgvmFile(revision=revision, architecture=architecture,
                                page_size=page_size)
        self._next_bit = 0
        self._next_area = 0

    # ------------------------------------------------------------ helpers
    @property
    def all_masks(self) -> int:
        mask = 0
        for p in self._file.platforms:
            if isinstance(p, m.SupportedPlatform):
                mask |= p.compatibility_mask
        return mask

    def _mask(self, mask: int | None) -> int:
        if mask is None:
            mask = self.all_masks
            if not mask:
                raise BuildError("declare a platform before adding headers that need a mask")
        return mask

    def add(self, header: m.Header) -> m.Header:
        """Append any model header to the list of its section."""
        sec = header.section
        {Section.PLATFORM: self._file.platforms,
         Section.INITIALIZATION: self._file.initializations,
         Section.DIRECTIVE: self._file.directives}[sec].append(header)
        return header

    # ----------------------------------------------------------- platform
    def platform(self, platform_type: int, mask: int | None = None, version: int = 1,
                 highest_vtl: int = 0, shared_gpa_boundary: int = 0) -> int:
        """Declare a supported platform; returns its compatibility mask
        (auto-assigned 1, 2, 4, ... unless given)."""
        if mask is None:
            used = self.all_masks
            while (1 << self._next_bit) & used:
                self._next_bit += 1
            if self._next_bit > 31:
                raise BuildError("no free compatibility mask bits")
            mask = 1 << self._next_bit
            self._next_bit += 1
        self.add(m.SupportedPlatform(compatibility_mask=mask, platform_type=int(platform_type),
                                     platform_version=version, highest_vtl=highest_vtl,
                                     shared_gpa_boundary=shared_gpa_boundary))
        return mask

    # ----------------------------------------------------- initialization
    def guest_policy(self, policy: int, mask: int | None = None) -> m.GuestPolicy:
        return self.add(m.GuestPolicy(policy=policy, compatibility_mask=self._mask(mask)))

    # --------------------------------------------------------- directives
    def page(self, gpa: int, data=None, mask: int | None = None,
             data_type: int = PageDataType.NORMAL, unmeasured: bool = False,
             large: bool = False, shared: bool = False) -> m.PageData:
        """One page. ``data`` (at most 4 KiB; zero-padded) or None for a
        zero page; ``large`` sets IS_2MB_PAGE (the file still carries at most
        4 KiB of data, the rest of the 2 MiB page is zero)."""
        flags = (1 if large else 0) | (2 if unmeasured else 0) | (4 if shared else 0)
        # bits: PageDataFlags.IS_2MB_PAGE, UNMEASURED, SHARED
        if data is not None and len(data) > PAGE_SIZE_4K:
            raise BuildError(f"page data at 0x{gpa:x}: {len(data)} bytes exceed one 4 KiB page"
                             " (use pages())")
        if data is not None and len(data) == 0:
            data = None
        return self.add(m.PageData(gpa, self._mask(mask), flags, int(data_type), data))

    def pages(self, gpa: int, data, mask: int | None = None, **kw) -> list[m.PageData]:
        """Consecutive 4 KiB pages holding ``data`` (last page zero-padded)."""
        if isinstance(data, memoryview) and data.readonly:
            mv = data.cast("B") if data.format != "B" else data
        else:
            mv = memoryview(data if isinstance(data, bytes) else bytes(data))
        out = []
        for i in range(0, len(mv), PAGE_SIZE_4K):
            out.append(self.page(gpa + i, mv[i:i + PAGE_SIZE_4K], mask=mask, **kw))
        return out

    def zero_pages(self, gpa: int, count: int, mask: int | None = None, **kw) -> list[m.PageData]:
        step = PAGE_SIZE_2M if kw.get("large") else PAGE_SIZE_4K
        return [self.page(gpa + i * step, None, mask=mask, **kw) for i in range(count)]

    def parameter_area(self, size: int, initial_data=None, index: int | None = None) -> int:
        """Declare a parameter area of ``size`` bytes; returns its index."""
        if index is None:
            index = self._next_area
        self._next_area = max(self._next_area, index + 1)
        self.add(m.ParameterArea(number_of_bytes=size, parameter_area_index=index,
                                 initial_data=initial_data))
        return index

    def parameter(self, header_type: int, index: int, offset: int) -> m.Parameter:
        """Any IGVM_VHS_PARAMETER directive (SRAT, MADT, COMMAND_LINE, ...)."""
        return self.add(m.PARAMETER_CLASSES[header_type](parameter_area_index=index,
                                                          byte_offset=offset))

    # Parameters carry no compatibility mask; ``mask`` is accepted for
    # symmetry with the other directives and ignored.
    def vp_count(self, index: int, offset: int = 0, mask: int | None = None) -> m.Parameter:
        return self.parameter(HeaderType.VP_COUNT_PARAMETER, index, offset)

    def memory_map(self, index: int, offset: int = 0, mask: int | None = None) -> m.Parameter:
        return self.parameter(HeaderType.MEMORY_MAP, index, offset)

    def environment_info(self, index: int, offset: int = 0, mask: int | None = None) -> m.Parameter:
        return self.parameter(HeaderType.ENVIRONMENT_INFO_PARAMETER, index, offset)

    def parameter_insert(self, gpa: int, index: int, mask: int | None = None) -> m.ParameterInsert:
        return self.add(m.ParameterInsert(gpa=gpa, compatibility_mask=self._mask(mask),
                                          parameter_area_index=index))

    def vp_context(self, gpa: int, data, mask: int | None = None, vp_index: int = 0) -> m.VpContext:
        """A VP context; ``data`` is a VMSA page, a native context, or an
        object with ``to_bytes()`` (see :mod:`harness.igvm.vmsa`)."""
        if hasattr(data, "to_bytes") and not isinstance(data, (bytes, bytearray, memoryview)):
            data = data.to_bytes()
        return self.add(m.VpContext(gpa=gpa, compatibility_mask=self._mask(mask),
                                    vp_index=vp_index, data=data))

    def required_memory(self, gpa: int, size: int, mask: int | None = None,
                        vtl2_protectable: bool = False) -> m.RequiredMemory:
        return self.add(m.RequiredMemory(gpa=gpa, compatibility_mask=self._mask(mask),
                                         number_of_bytes=size, flags=int(vtl2_protectable)))

    def error_range(self, gpa: int, size: int, mask: int | None = None) -> m.ErrorRange:
        return self.add(m.ErrorRange(gpa=gpa, compatibility_mask=self._mask(mask), size_bytes=size))

    def snp_id_block(self, mask: int | None = None, **fields) -> m.SnpIdBlock:
        return self.add(m.SnpIdBlock(compatibility_mask=self._mask(mask), **fields))

    def raw_header(self, header_type: int, body: bytes,
                   section: Section | None = None) -> m.RawHeader:
        """A header written verbatim (for unknown or deliberately odd types)."""
        return self.add(m.RawHeader(type=header_type, body=bytes(body), raw_section=section))

    # ------------------------------------------------------------- output
    def model(self) -> m.IgvmFile:
        return self._file

    def build(self) -> bytes:
        return serialize(self._file)

    def write(self, path) -> int:
        data = self.build()
        with open(path, "wb") as fh:
            fh.write(data)
        return len(data)
