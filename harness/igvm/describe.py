"""Describe an IGVM model for people and for JSON: platforms, headers,
coalesced page ranges and decoded VP contexts.

What is summarised (counts, page ranges, VP contexts) is gathered by a
consumer of the walk (:class:`Description`): ``inspect`` gets it from the
scan that validates the file; the header listing then decodes the headers
it shows, one at a time, as it prints them."""

from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Iterator

from harness.igvm import model as m
from harness.igvm.defs import Architecture, PageDataFlags, PageDataType, PlatformType
from harness.igvm.limits import MAX_VCPUS, MAX_VIOLATIONS
from harness.igvm.vmsa import NativeVpContextX64, SevEsVmsa
from harness.igvm.walk import Consumer, PageRun, replay


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
    d = Description(include_pages=False)
    replay(f, [d])
    return d.page_ranges()


def decode_vp_context(f, h: m.VpContext) -> dict:
    """The VP context decoded for the platform its mask names (``f``: the
    file, or its platform headers)."""
    ptype = None
    for p in getattr(f, "platforms", f):
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
#: VP contexts ``describe`` decodes (QEMU starts at most this many vCPUs);
#: the rest are counted.
CONTEXTS_DECODED = MAX_VCPUS
#: Kinds of the listing's spans: one header (with its copies), a run of
#: page headers, a run of consecutive headers.
_HEADER, _PAGES, _HEADERS = 0, 1, 2


class Description(Consumer):
    """What ``describe`` says of a file, gathered as a consumer of the walk:
    the counts, the decoded VP contexts and the coalesced page ranges (in
    arrays, 35 bytes a range), and which headers the listing shows
    (13 bytes a listed header or run of pages: the listing decodes them
    again when it is printed, one at a time, as asked)."""

    def __init__(self, include_pages: bool = False) -> None:
        self.include_pages = include_pages
        self.n_pages = 0
        self.contexts: list[dict] = []
        self.contexts_not_decoded = 0
        self.raw = 0
        self.not_listed = 0  # raw headers past RAW_LISTED
        # listed spans: file index, section, position, count, pages?
        self._idx, self._sec, self._pos, self._cnt = (array.array("I"), bytearray(),
                                                      array.array("I"), array.array("I"))
        self._kind = bytearray()
        # page ranges, coalesced as the runs arrive
        self._gpa, self._pages, self._size = array.array("Q"), array.array("Q"), array.array("I")
        self._mask, self._flags, self._type = array.array("I"), array.array("I"), array.array("H")
        self._zero, self._first = bytearray(), array.array("I")
        self._next_index = -1
        self._platform_masks: list[tuple[int, int]] = []

    #: the walk ended with every header in section order (else: replay the
    #: model, section by section -- the listing's cut of raw headers past
    #: RAW_LISTED is in that order; a walk of a file whose sections
    #: interleave met them in another, found by fuzz/fuzz_igvm.py)
    complete = False
    _section = 0      # the highest section seen so far
    _in_order = True

    def _seen(self, section: int) -> None:
        if section < self._section:
            self._in_order = False
        self._section = max(self._section, section)

    def end(self, walk) -> None:
        self.complete = not walk.late_platforms and self._in_order

    def header(self, walk, h, at) -> None:
        self._seen(at.section)
        if at.section == 2 and isinstance(h, m.VpContext):
            if len(self.contexts) < CONTEXTS_DECODED:
                self.contexts.append(decode_vp_context(walk.platforms, h))
            else:
                self.contexts_not_decoded += at.count
        if isinstance(h, m.RawHeader):
            if self.raw >= RAW_LISTED:
                self.not_listed += at.count
                return
            self.raw += 1
        self._span(at.index, at.section, at.position, at.count, 0)

    def pages(self, walk, run: PageRun) -> None:
        self._seen(2)
        self.n_pages += run.count
        if self.include_pages:
            self._span(run.index, 2, run.position, run.count, 1)
        zero = run.data is None
        n = len(self._gpa) - 1
        if (n >= 0 and run.index == self._next_index
                and self._gpa[n] + self._pages[n] * self._size[n] == run.gpa
                and self._size[n] == run.page_size and self._mask[n] == run.mask
                and self._flags[n] == run.flags and self._type[n] == run.data_type
                and self._zero[n] == zero):
            self._pages[n] += run.count
        else:
            self._gpa.append(run.gpa)
            self._pages.append(run.count)
            self._size.append(run.page_size)
            self._mask.append(run.mask)
            self._flags.append(run.flags)
            self._type.append(run.data_type)
            self._zero.append(zero)
            self._first.append(run.index)
        self._next_index = run.index + run.count

    def _span(self, index: int, section: int, position: int, count: int, pages: int) -> None:
        n = len(self._idx) - 1
        if (count == 1 and not pages and n >= 0 and not self._kind[n] & 1
                and self._sec[n] == section and self._pos[n] + self._width(n) == position
                and self._idx[n] + self._width(n) == index
                and (self._kind[n] == _HEADERS or self._cnt[n] == 1)):
            # the next header of a run of them: one span (a file of a million
            # parameters costs 13 bytes, not 13 MB)
            self._kind[n] = _HEADERS
            self._cnt[n] += 1
            return
        self._idx.append(index)
        self._sec.append(section)
        self._pos.append(position)
        self._cnt.append(count)
        self._kind.append(pages)

    def _width(self, n: int) -> int:
        """Headers span ``n`` lists one after the other (copies are one)."""
        return self._cnt[n] if self._kind[n] else 1

    def page_ranges(self) -> Iterator[PageRange]:
        for k in range(len(self._gpa)):
            yield PageRange(self._gpa[k], self._pages[k], self._size[k], self._mask[k],
                            self._flags[k], self._type[k], bool(self._zero[k]), self._first[k])

    def header_dicts(self, f: m.IgvmFile) -> Iterator[dict]:
        """The listed headers of ``f`` (the file walked), each decoded now."""
        sections = (f.platforms, f.initializations, f.directives)
        order = range(len(self._idx))
        sec, pos = self._sec, self._pos
        if any(sec[k] > sec[k + 1] for k in range(len(sec) - 1)):
            # a file out of section order: listed section by section, as the model holds it
            order = sorted(order, key=lambda k: (sec[k], pos[k]))
        for k in order:
            seq = sections[self._sec[k]]
            offset = getattr(seq, "offset", None)
            pos, count, index = self._pos[k], self._cnt[k], self._idx[k]
            if self._kind[k]:  # a run of pages, or of headers: one entry each
                for j in range(count):
                    yield _header_dict(seq[pos + j], index + j, offset(pos + j) if offset else None,
                                       1)
            else:
                yield _header_dict(seq[pos], index, offset(pos) if offset else None, count)


def _header_dict(h, index: int, offset: int | None, count: int) -> dict:
    d = h.as_dict()
    d["index"] = index
    if offset is not None:
        d["offset"] = offset
    d["section"] = h.section.name.lower()
    if count > 1:
        d["copies"] = count - 1
    return d


def describe(f: m.IgvmFile, include_pages: bool = False, lazy: bool = False,
             walked: Description | None = None) -> dict:
    """A JSON-ready description. Page-data headers are summarised as ranges
    unless ``include_pages``.  With ``lazy`` "headers" and "page_ranges" are
    iterators, so that a file of a million headers is printed one at a time
    rather than held as a million dicts (about 1 KiB each).  A run of
    byte-identical headers the scan counted past the violation limit is one
    entry, with ``"copies"``: how many follow it.  Headers kept raw (each a
    violation) are listed up to :data:`RAW_LISTED`, as violations are, and
    the rest counted in ``"raw_headers_not_listed"``.

    ``walked``: a :class:`Description` that already took part in the walk
    of ``f`` (the scan that parsed it); without it ``f`` is replayed."""
    d = walked
    if d is None:
        d = Description(include_pages)
        replay(f, [d])
    if d.walk_error is not None:
        raise d.walk_error
    headers = d.header_dicts(f) if lazy else list(d.header_dicts(f))
    ranges = (r.as_dict() for r in d.page_ranges())
    platforms = []
    for p in m.of_class(f.platforms, m.SupportedPlatform):
        if isinstance(p, m.SupportedPlatform):
            platforms.append({"type": _enum(PlatformType, p.platform_type),
                              "compatibility_mask": p.compatibility_mask,
                              "version": p.platform_version, "highest_vtl": p.highest_vtl,
                              "shared_gpa_boundary": p.shared_gpa_boundary})
    out = {
        "format_version": f.revision,
        "architecture": _enum(Architecture, f.architecture),
        "page_size": f.page_size,
        "header_count": f.header_count(),
        "page_data_headers": d.n_pages,
        "platforms": platforms,
        "headers": headers,
        "raw_headers_not_listed": d.not_listed,
        "page_ranges": ranges if lazy else list(ranges),
        "vp_contexts": d.contexts,
    }
    if d.contexts_not_decoded:
        out["vp_contexts_not_decoded"] = d.contexts_not_decoded
    return out


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
