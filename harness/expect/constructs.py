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

#: Header types whose optional form (bit 31 set) is a construct of its own.
_OPTIONAL_NAMED = frozenset({HeaderType.CORIM_DOCUMENT, HeaderType.CORIM_SIGNATURE})


def construct_of(header: m.Header) -> str:
    """The construct name of one header."""
    if isinstance(header, m.PageData):
        if header.data_type != PageDataType.NORMAL:
            try:
                return f"PAGE_DATA({PageDataType(header.data_type).name})"
            except ValueError:
                return f"PAGE_DATA(type {header.data_type})"
        if header.is_zero_page:
            return "PAGE_DATA(zero)"
        if header.flags & PageDataFlags.UNMEASURED:
            return "PAGE_DATA(unmeasured)"
        return "PAGE_DATA"
    if isinstance(header, m.VpContext) and header.vp_index != 0:
        return "VP_CONTEXT(AP)"
    t = header.header_type
    if t & OPTIONAL_BIT and (t & ~OPTIONAL_BIT) in _OPTIONAL_NAMED:
        return f"{HeaderType(t & ~OPTIONAL_BIT).name}(optional)"
    try:
        return HeaderType(t).name
    except ValueError:
        return "UNKNOWN"


def used(model: m.IgvmFile, mask: int) -> dict[str, int]:
    """Constructs the file uses for the platform of ``mask`` -> header count,
    in first-use order."""
    out: dict[str, int] = {}
    for seq in (model.initializations, model.directives):
        for _, header, count in m.runs(seq):  # one header at a time: a parsed file is lazy
            hm = getattr(header, "compatibility_mask", None)
            if hm is not None and not hm & mask:
                continue
            name = construct_of(header)
            out[name] = out.get(name, 0) + count
    if out.get("SNP_ID_BLOCK", 0) > 1:
        out["SNP_ID_BLOCK(multiple)"] = out.pop("SNP_ID_BLOCK")
    return out
