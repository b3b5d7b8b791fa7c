"""The IGVM constructs a file uses, named as ``data/constructs.toml`` names them.

A construct is a header type, refined where QEMU treats variants of one
header type differently: PAGE_DATA by page type (``PAGE_DATA(SECRETS)``) or
flags (``PAGE_DATA(zero)``, ``PAGE_DATA(unmeasured)``), VP_CONTEXT for an AP
(``VP_CONTEXT(AP)``), several SNP_ID_BLOCKs (``SNP_ID_BLOCK(multiple)``).
Which expectation case describes each construct is data
(:attr:`harness.expect.table.Table.constructs`); what QEMU does with it is
the verdict engine's answer (:func:`harness.expect.verdict.predict`).
"""

from __future__ import annotations

from harness.igvm import model as m
from harness.igvm.defs import OPTIONAL_BIT, HeaderType, PageDataFlags, PageDataType
from harness.igvm.walk import Consumer, PageRun, replay

#: Header types whose optional form (bit 31 set) is a construct of its own.
_OPTIONAL_NAMED = frozenset({HeaderType.CORIM_DOCUMENT, HeaderType.CORIM_SIGNATURE})
_UNMEASURED = int(PageDataFlags.UNMEASURED)


def page_construct(data_type: int, zero: bool, flags: int) -> str:
    """The construct name of page data with these attributes."""
    if data_type != PageDataType.NORMAL:
        try:
            return f"PAGE_DATA({PageDataType(data_type).name})"
        except ValueError:
            return f"PAGE_DATA(type {data_type})"
    if zero:
        return "PAGE_DATA(zero)"
    if flags & _UNMEASURED:
        return "PAGE_DATA(unmeasured)"
    return "PAGE_DATA"


def construct_of(header: m.Header) -> str:
    """The construct name of one header."""
    if isinstance(header, m.PageData):
        return page_construct(header.data_type, header.is_zero_page, header.flags)
    if isinstance(header, m.VpContext) and header.vp_index != 0:
        return "VP_CONTEXT(AP)"
    t = header.header_type
    name = _NAMES.get(t)
    if name is not None:
        return name
    if t & OPTIONAL_BIT and (t & ~OPTIONAL_BIT) in _OPTIONAL_NAMED:
        return f"{HeaderType(t & ~OPTIONAL_BIT).name}(optional)"
    return "UNKNOWN"


_NAMES = {int(t): t.name for t in HeaderType}


class Constructs(Consumer):
    """The constructs a file uses for the platform of ``mask``, as a consumer
    of the walk (page data counted run by run): :meth:`result` after it."""

    def __init__(self, mask: int) -> None:
        self.mask = mask
        self.initializations: dict[str, int] = {}
        self.directives: dict[str, int] = {}

    def header(self, walk, h, at) -> None:
        if at.section == 0:
            return
        hm = getattr(h, "compatibility_mask", None)
        if hm is not None and not hm & self.mask:
            return
        out = self.initializations if at.section == 1 else self.directives
        name = construct_of(h)
        out[name] = out.get(name, 0) + at.count

    def pages(self, walk, run: PageRun) -> None:
        if run.mask & self.mask:
            name = page_construct(run.data_type, run.data is None, run.flags)
            self.directives[name] = self.directives.get(name, 0) + run.count

    def result(self) -> dict[str, int]:
        """Construct -> header count, initialization headers first, each in first-use order."""
        if self.walk_error is not None:
            raise self.walk_error
        out = dict(self.initializations)
        for name, count in self.directives.items():
            out[name] = out.get(name, 0) + count
        if out.get("SNP_ID_BLOCK", 0) > 1:
            out["SNP_ID_BLOCK(multiple)"] = out.pop("SNP_ID_BLOCK")
        return out


def used(model: m.IgvmFile, mask: int) -> dict[str, int]:
    """Constructs the file uses for the platform of ``mask`` -> header count,
    in first-use order."""
    c = Constructs(mask)
    replay(model, [c])
    return c.result()
