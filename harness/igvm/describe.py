"""Describe an IGVM model for people and for JSON: platforms, headers,
coalesced page ranges and decoded VP contexts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from harness.igvm import model as m
from harness.igvm.defs import Architecture, PageDataFlags, PageDataType, PlatformType
from harness.igvm.limits import MAX_VIOLATIONS
from harness.igvm.vmsa import NativeVpContextX64, SevEsVmsa


@dataclass
class PageRange:
    """Consecutive page-data headers with equal mask, flags, type and
    zero-ness (QEMU groups pages the same way: backends/igvm.c
    qigvm_process_mem_page)."""

    gpa: int
    pages: int
    page_size: int
    compatibility_mask: int
    flags: int
    data_type: int
    zero: bool
    first_index: int

    @property
    def end(self) -> int:
        return self.gpa + self.pages * self.page_size

    def as_dict(self) -> dict:
        return {"gpa": self.gpa, "end": self.end, "pages": self.pages,
                "page_size": self.page_size, "compatibility_mask": self.compatibility_mask,
                "flags": _flag_names(self.flags), "data_type": _enum(PageDataType, self.data_type),
                "zero": self.zero, "first_header": self.first_index}


def _enum(cls, value) -> str:
    try:
        return cls(value).name
    except ValueError:
        return str(value)


def _flag_names(flags: int) -> list[str]:
    return [f.name for f in PageDataFlags if flags & f] + (
        [f"0x{flags & ~7:x}"] if flags & ~7 else [])


def page_ranges(f: m.IgvmFile) -> Iterator[PageRange]:
    """The coalesced page ranges, in file order, one at a time (a file of
    pages that never coalesce has as many ranges as pages)."""
    cur: PageRange | None = None
    prev_index = None
    base = len(f.platforms) + len(f.initializations)
    large = int(PageDataFlags.IS_2MB_PAGE)  # an int: enum flag arithmetic costs ~1 us a page
    for pos, h in enumerate(f.directives):
        if not isinstance(h, m.PageData):
            continue
        i = base + pos
        size = 0x200000 if h.flags & large else 0x1000
        zero = not h.data
        if (cur is not None and prev_index == i - 1 and cur.end == h.gpa
                and cur.page_size == size and cur.compatibility_mask == h.compatibility_mask
                and cur.flags == h.flags and cur.data_type == h.data_type and cur.zero == zero):
            cur.pages += 1
        else:
            if cur is not None:
                yield cur
            cur = PageRange(h.gpa, 1, size, h.compatibility_mask, h.flags, h.data_type, zero, i)
        prev_index = i
    if cur is not None:
        yield cur


def decode_vp_context(f: m.IgvmFile, h: m.VpContext) -> dict:
    """The VP context decoded for the platform its mask names."""
    ptype = None
    for p in f.platforms:
        if isinstance(p, m.SupportedPlatform) and p.compatibility_mask == h.compatibility_mask:
            ptype = p.platform_type
    out = {"gpa": h.gpa, "compatibility_mask": h.compatibility_mask, "vp_index": h.vp_index,
           "platform": _enum(PlatformType, ptype) if ptype is not None else None}
    data = bytes(h.data) if h.data is not None else b""
    if ptype in (PlatformType.SEV_SNP, PlatformType.SEV_ES) and len(data) >= SevEsVmsa.SIZE:
        v = SevEsVmsa.from_bytes(data)
        out["kind"] = "vmsa"
        out["fields"] = v.as_dict()
        out["qemu_unsupported_fields"] = v.qemu_unsupported_fields()
    elif ptype in (PlatformType.NATIVE, PlatformType.SEV) and len(data) >= NativeVpContextX64.SIZE:
        out["kind"] = "native-x64"
        out["fields"] = NativeVpContextX64.from_bytes(data).as_dict()
    elif ptype == PlatformType.VSM_ISOLATION and len(data) >= 4:
        count = int.from_bytes(data[:4], "little")
        regs = []
        for i in range(count):
            r = data[4 + 32 * i:4 + 32 * (i + 1)]
            if len(r) < 32:
                break
            regs.append({"vtl": r[0], "register_name": int.from_bytes(r[1:5], "little"),
                         "value": r[16:32].hex()})
        out["kind"] = "vbs"
        out["registers"] = regs
    else:
        out["kind"] = "raw"
        out["length"] = len(data)
    return out


#: Raw headers (undecodable, each a violation) ``describe`` lists; the
#: rest are counted, as the validator counts violations past its limit.
RAW_LISTED = MAX_VIOLATIONS


def _sections(f: m.IgvmFile):
    """``(base index, headers)`` of the three sections, in :meth:`IgvmFile.headers` order."""
    base = 0
    for seq in (f.platforms, f.initializations, f.directives):
        yield base, seq
        base += len(seq)


def describe(f: m.IgvmFile, include_pages: bool = False, lazy: bool = False) -> dict:
    """A JSON-ready description. Page-data headers are summarised as ranges
    unless ``include_pages``.  With ``lazy`` "headers" and "page_ranges" are
    iterators, so that a file of a million headers is printed one at a time
    rather than held as a million dicts (about 1 KiB each).  A run of
    byte-identical headers the scan counted past the violation limit is one
    entry, with ``"copies"``: how many follow it.  Headers kept raw (each a
    violation) are listed up to :data:`RAW_LISTED`, as violations are, and
    the rest counted in ``"raw_headers_not_listed"``."""

    not_listed = [0]  # raw headers past RAW_LISTED, known once the headers are read

    def header_dicts():
        raw = 0
        for base, seq in _sections(f):
            offset = getattr(seq, "offset", None)
            for pos, h, count in m.runs(seq):
                if isinstance(h, m.PageData) and not include_pages:
                    continue
                if isinstance(h, m.RawHeader):
                    if raw >= RAW_LISTED:
                        not_listed[0] += count
                        continue
                    raw += 1
                d = h.as_dict()
                d["index"] = base + pos
                if offset is not None:
                    d["offset"] = offset(pos)
                d["section"] = h.section.name.lower()
                if count > 1:
                    d["copies"] = count - 1
                yield d
    headers = header_dicts() if lazy else list(header_dicts())
    ranges = (r.as_dict() for r in page_ranges(f))
    platforms = []
    for p in m.of_class(f.platforms, m.SupportedPlatform):
        if isinstance(p, m.SupportedPlatform):
            platforms.append({"type": _enum(PlatformType, p.platform_type),
                              "compatibility_mask": p.compatibility_mask,
                              "version": p.platform_version, "highest_vtl": p.highest_vtl,
                              "shared_gpa_boundary": p.shared_gpa_boundary})
    n_pages, contexts = 0, []  # one pass over the directives for both
    page_data, vp_context = m.PageData, m.VpContext
    for _, d, count in m.runs(f.directives):
        if type(d) is page_data or isinstance(d, page_data):
            n_pages += count
        elif isinstance(d, vp_context):
            contexts.append(decode_vp_context(f, d))
    return {
        "format_version": f.revision,
        "architecture": _enum(Architecture, f.architecture),
        "page_size": f.page_size,
        "header_count": f.header_count(),
        "page_data_headers": n_pages,
        "platforms": platforms,
        "headers": headers,
        # a callable while "headers" is an iterator: the count is known after it
        "raw_headers_not_listed": (lambda: not_listed[0]) if lazy else not_listed[0],
        "page_ranges": ranges if lazy else list(ranges),
        "vp_contexts": contexts,
    }


def render_text(d: dict, name: str) -> str:
    return "\n".join(render_lines(d, name))


def render_lines(d: dict, name: str):
    """The lines of :func:`render_text`, one at a time (``d`` may be lazy)."""
    lines = [f"{name}: IGVM format v{d['format_version']}, {d['architecture']}, "
             f"page size 0x{d['page_size']:x}, {d['header_count']} headers "
             f"({d['page_data_headers']} page data)"]
    lines.append("platforms:")
    for p in d["platforms"]:
        lines.append(f"  mask 0x{p['compatibility_mask']:x}  {p['type']} v{p['version']}  "
                     f"highest_vtl {p['highest_vtl']}  shared_gpa_boundary "
                     f"0x{p['shared_gpa_boundary']:x}")
    lines.append("headers (page data summarised below):")
    yield from lines
    lines = []
    for h in d["headers"]:
        fields = ", ".join(f"{k}={_fmt(v)}" for k, v in h.items()
                           if k not in ("type", "index", "offset", "section", "copies"))
        off = f" @0x{h['offset']:x}" if "offset" in h else ""
        copies = f" (and {h['copies']} identical copies after it)" if h.get("copies") else ""
        yield f"  [{h['index']}]{off} {h['type']}: {fields}{copies}"
    more = d.get("raw_headers_not_listed", 0)
    more = more() if callable(more) else more
    if more:
        yield f"  ... and {more} more headers kept raw (each a violation), not listed"
    yield "page ranges:"
    for r in d["page_ranges"]:
        kind = "zero" if r["zero"] else "data"
        flags = "|".join(r["flags"]) or "-"
        yield (f"  0x{r['gpa']:012x}-0x{r['end']:012x}  {r['pages']:6d} x 0x{r['page_size']:x}"
               f"  mask 0x{r['compatibility_mask']:x}  {r['data_type']:<10} {kind:<4} {flags}")
    for v in d["vp_contexts"]:
        lines.append(f"VP context: VP {v['vp_index']} {v['platform']} ({v['kind']}) at "
                     f"0x{v['gpa']:x}")
        for k, val in (v.get("fields") or {}).items():
            lines.append(f"    {k} = {_fmt(val)}")
        for reg in v.get("registers", []):
            lines.append(f"    vtl {reg['vtl']} reg 0x{reg['register_name']:x} = {reg['value']}")
        if v.get("qemu_unsupported_fields"):
            lines.append(f"    QEMU rejects non-zero: {', '.join(v['qemu_unsupported_fields'])}")
    yield from lines


def _fmt(v) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        return f"0x{v:x}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    return str(v)
