"""CoRIM headers in an IGVM file: find and read them, or attach new ones.

Headers 0x104 (CoRIM document) and 0x105 (its COSE_Sign1 signature) carry
an ``IGVM_VHS_CORIM_DATA`` (compatibility mask, file offset, size,
reserved) pointing at file data (igvm_defs 0.5, behind the crates' ``corim``
feature).  The harness's parser models the igvm C library QEMU links, built
without that feature, so it keeps them as raw headers (rule
``unknown-header-type``); this module reads them from there -- with or
without the optional bit (``IGVM_VHT_OPTIONAL_BIT``, bit 31) -- and applies
the igvm crate's rules for them (``igvm/src/lib.rs``, corim feature):
reserved zero (``ReservedNotZero``), data inside the file data section
(``InvalidDataSize``), at most one document and one signature per
compatibility mask bit (``MultipleCorimDocuments``,
``MultipleCorimSignatures``), and a signature only after its document
(``MissingCorimDocument``).  Each finding is one line; nothing here raises
on a bad file.  Reading is lazy: only headers of the two types (and their
optional forms) are built, so a file of millions of other headers costs
one pass of type reads.
"""

from __future__ import annotations

from harness.corim import profile as P
from harness.corim.cbor import CorimError
from harness.corim.decode import LaunchCorim, decode
from harness.igvm import defs
from harness.igvm import model as m
from harness.igvm.defs import HeaderType, OPTIONAL_BIT, PlatformType
from harness.igvm.limits import MAX_CORIM_BYTES
from harness.record import Factory, Record

CORIM_TYPES = (HeaderType.CORIM_DOCUMENT, HeaderType.CORIM_SIGNATURE)
_ALL_TYPES = tuple(t | bit for t in CORIM_TYPES for bit in (0, OPTIONAL_BIT))
_NAMES = {HeaderType.CORIM_DOCUMENT: "CoRIM document", HeaderType.CORIM_SIGNATURE: "CoRIM signature"}


class CorimHeader(Record):
    """One 0x104 / 0x105 header as found (``data`` None when unusable)."""

    index: int                 # among all variable headers, in file order
    type: int                  # 0x104 or 0x105 (optional bit cleared)
    optional: bool
    compatibility_mask: int
    data: bytes | None
    problem: str | None = None

    @property
    def what(self) -> str:
        opt = " (optional bit set)" if self.optional else ""
        return f"header {self.index}: {_NAMES[self.type]} 0x{self.type:x}{opt}"


class PlatformCorim(Record):
    """The CoRIM an image carries for one of its platforms, decoded and checked."""

    platform: PlatformType | int
    mask: int
    document: CorimHeader
    signature: CorimHeader | None = None
    corim: LaunchCorim | None = None
    error: str | None = None                     # the document's first problem
    signature_info: object = None                # harness.corim.sign.SignatureInfo
    signature_error: str | None = None

    @property
    def name(self) -> str:
        return P.PLATFORM_NAMES.get(self.platform) or _pname(self.platform)

    def as_dict(self) -> dict:
        return {"platform": self.name, "mask": f"0x{self.mask:x}",
                "document_header": self.document.index, "optional_bit": self.document.optional,
                "signature_header": self.signature.index if self.signature else None,
                "corim": self.corim.as_dict() if self.corim else None, "error": self.error,
                "signature": self.signature_info.as_dict() if self.signature_info else None,
                "signature_error": self.signature_error}


class CorimFindings(Record):
    """Every CoRIM header of a file, per platform, and what is wrong."""

    headers: list = Factory(list)         # CorimHeader
    platforms: list = Factory(list)       # PlatformCorim, in platform-header order
    problems: list = Factory(list)        # one line each (header-level rules)

    def __bool__(self) -> bool:
        return bool(self.headers)

    @property
    def failed(self) -> bool:
        return bool(self.problems) or any(p.error or p.signature_error for p in self.platforms)

    def lines(self) -> list[str]:
        """What inspect / validate print."""
        out = []
        for p in self.platforms:
            head = f"CoRIM for {p.name} (mask 0x{p.mask:x}, header {p.document.index}"
            head += ", optional bit)" if p.document.optional else ")"
            out.append(f"{head}: " + (p.corim.summary() if p.corim else f"malformed: {p.error}"))
            if p.corim and p.error:
                out.append(f"  {p.error}")
            if p.signature is not None:
                out.append("  signature (header %d): %s" % (
                    p.signature.index,
                    p.signature_info.summary() if p.signature_info else f"bad: {p.signature_error}"))
            elif p.corim:
                out.append("  unsigned (no CoRIM signature header for this mask)")
        out += self.problems
        return out

    def as_dict(self) -> dict:
        return {"platforms": [p.as_dict() for p in self.platforms], "problems": self.problems,
                "headers": len(self.headers)}


def _pname(platform) -> str:
    try:
        return PlatformType(platform).name.lower()
    except ValueError:
        return f"platform type {platform}"


def _file_data_start(model: m.IgvmFile) -> tuple[int, int] | None:
    """(start, end) of the file data section of a parsed file, or None."""
    buf = model.buffer
    if buf is None or len(buf) < defs.FIXED_HEADER_V1.size:
        return None
    fixed = defs.FIXED_HEADER_V1.unpack(buf)
    return fixed["variable_header_offset"] + fixed["variable_header_size"], len(buf)


def _candidates(model: m.IgvmFile):
    """(file index, header) of every CoRIM header in either section."""
    found = []
    for seq in (model.initializations, model.directives):
        of_type = getattr(seq, "of_type", None)
        if of_type is not None:  # parsed: only these types are built
            for t in _ALL_TYPES:
                found += [(seq.file_index(pos), h) for pos, h in of_type(t)]
        else:
            base = len(model.platforms) + (0 if seq is model.initializations
                                           else len(model.initializations))
            found += [(base + i, h) for i, h in enumerate(seq)
                      if (h.header_type & ~OPTIONAL_BIT) in CORIM_TYPES]
    return sorted(found, key=lambda x: x[0])


def find(model: m.IgvmFile) -> list[CorimHeader]:
    """Every CoRIM header, in file order, with its data or its problem."""
    section = _file_data_start(model)
    out = []
    for index, h in _candidates(model):
        if isinstance(h, (m.CorimDocument, m.CorimSignature)):  # built in memory
            data = bytes(h.data or b"")
            out.append(CorimHeader(index, h.TYPE, h.optional, h.compatibility_mask, data,
                                   "reserved field is not zero" if h.reserved else None))
            continue
        t = h.header_type
        base, optional = t & ~OPTIONAL_BIT, bool(t & OPTIONAL_BIT)
        body = bytes(h.body)
        if len(body) != defs.CORIM_DATA.size:
            out.append(CorimHeader(index, base, optional, 0, None,
                                   f"length {len(body)}, IGVM_VHS_CORIM_DATA has "
                                   f"{defs.CORIM_DATA.size} bytes"))
            continue
        f = defs.CORIM_DATA.unpack(body)
        hdr = CorimHeader(index, base, optional, f["compatibility_mask"], None)
        if f["reserved"]:
            hdr.problem = f"reserved field is 0x{f['reserved']:x}, must be zero"
        elif f["file_offset"] == 0:
            hdr.data = b""  # the crate's extract_file_data: offset 0 is no data
        elif section is None:
            hdr.problem = "the file's data section is unknown"
        else:
            start, end = section
            off, size = f["file_offset"], f["size_bytes"]
            if off < start or off + size > end:
                hdr.problem = (f"0x{size:x} bytes at file offset 0x{off:x} are outside the file "
                               f"data section [0x{start:x}, 0x{end:x})")
            elif size > MAX_CORIM_BYTES:
                hdr.problem = (f"{size} bytes; the limit is {MAX_CORIM_BYTES} (harness/igvm/"
                               "limits.py MAX_CORIM_BYTES)")
            else:
                hdr.data = bytes(model.buffer[off:off + size])
        out.append(hdr)
    return out


def _bits(mask: int):
    while mask:
        low = mask & -mask
        yield low
        mask ^= low


def read(model: m.IgvmFile, public_key=None) -> CorimFindings:
    """Find, decode and check the CoRIM headers; ``public_key``: a PEM file
    the signatures are verified with (None: their headers are only read)."""
    from harness.corim import sign

    found = CorimFindings(find(model))
    if not found.headers:
        return found
    by_bit = {p.compatibility_mask: p.platform_type
              for p in m.of_class(model.platforms, m.SupportedPlatform)}
    docs: dict[int, CorimHeader] = {}
    sigs: dict[int, CorimHeader] = {}
    for h in found.headers:
        if h.problem:
            found.problems.append(f"{h.what}: {h.problem}")
            continue
        if not h.compatibility_mask:
            found.problems.append(f"{h.what}: compatibility mask 0 names no platform")
            continue
        table = docs if h.type == HeaderType.CORIM_DOCUMENT else sigs
        for bit in _bits(h.compatibility_mask):
            if bit in table:
                found.problems.append(f"{h.what}: a second {_NAMES[h.type]} for mask bit "
                                      f"0x{bit:x} (header {table[bit].index} is the first)")
                continue
            if h.type == HeaderType.CORIM_SIGNATURE and bit not in docs:
                found.problems.append(f"{h.what}: no CoRIM document for mask bit 0x{bit:x} "
                                      "before it (igvm crate: MissingCorimDocument)")
                continue
            if bit not in by_bit:
                found.problems.append(f"{h.what}: mask bit 0x{bit:x} names no declared platform")
                continue
            table[bit] = h
    for bit, doc in docs.items():
        entry = PlatformCorim(by_bit[bit], bit, doc, sigs.get(bit))
        try:
            entry.corim = decode(doc.data)
        except CorimError as exc:
            entry.error = str(exc)
        if entry.corim is not None and entry.corim.platform != by_bit[bit]:
            entry.error = (f"the CoRIM describes {entry.corim.vendor}/{entry.corim.model} but its "
                           f"header's mask is the {entry.name} platform's")
        if entry.signature is not None:
            try:
                entry.signature_info = (sign.verify(entry.signature.data, doc.data, public_key)
                                        if public_key else sign.read_signature(entry.signature.data))
            except CorimError as exc:
                entry.signature_error = str(exc)
        found.platforms.append(entry)
    order = {p.compatibility_mask: i for i, p in enumerate(m.of_class(model.platforms,
                                                                      m.SupportedPlatform))}
    found.platforms.sort(key=lambda p: order.get(p.mask, 99))
    return found


def without_corim(model: m.IgvmFile) -> m.IgvmFile:
    """The same file without its CoRIM headers (they load no guest memory and
    so are not measured): what a loader that accepts them launches."""
    return m.IgvmFile(model.revision, model.architecture, model.page_size, model.platforms,
                      [h for h in model.initializations
                       if (h.header_type & ~OPTIONAL_BIT) not in CORIM_TYPES],
                      [h for h in model.directives
                       if (h.header_type & ~OPTIONAL_BIT) not in CORIM_TYPES],
                      model.buffer)


def attach(data, entries: list[tuple[PlatformType | int, bytes, bytes | None]],
           optional: bool = False) -> bytes:
    """A copy of IGVM ``data`` carrying, per platform, a CoRIM document
    header and (when given) its signature header, after the existing
    initialization headers (where the igvm crate's ``IgvmSerializer``
    puts them); CoRIM headers already there for those platforms are dropped."""
    from harness.igvm.builder import serialize
    from harness.igvm.parser import parse

    model = parse(data, check=False).materialize()
    new = []
    for platform, document, signature in entries:
        mask = model.mask_for(platform)
        if not mask:
            raise CorimError(f"the file declares no {_pname(platform)} platform to attach a CoRIM to")
        new.append(m.CorimDocument(mask, bytes(document), optional=optional))
        if signature is not None:
            new.append(m.CorimSignature(mask, bytes(signature), optional=optional))
    masks = {h.compatibility_mask for h in new}
    keep = [h for h in model.initializations if not (
        (h.header_type & ~OPTIONAL_BIT) in CORIM_TYPES and _mask_of(h) in masks)]
    model.initializations = keep + new
    return serialize(model)


def _mask_of(h) -> int | None:
    mask = getattr(h, "compatibility_mask", None)
    if mask is None and isinstance(h, m.RawHeader) and len(h.body) == defs.CORIM_DATA.size:
        mask = defs.CORIM_DATA.unpack(bytes(h.body))["compatibility_mask"]
    return mask


__all__ = ["CORIM_TYPES", "CorimFindings", "CorimHeader", "PlatformCorim", "attach", "find", "read",
           "without_corim"]


def is_corim_violation(violation, headers: list[CorimHeader]) -> bool:
    """True for the ``unknown-header-type`` violation the parser reports for a
    CoRIM header (the C library QEMU links has no ``corim`` feature)."""
    return (violation.rule == "unknown-header-type"
            and violation.header_index in {h.index for h in headers})


def load_measurable(data, source: str | None = None) -> tuple[m.IgvmFile, list[CorimHeader]]:
    """A file for the measurement layer: parsed with every rule, except that
    CoRIM headers are tolerated and left out (they are not measured).  A
    violation of any other rule raises as :func:`harness.igvm.parser.parse` does."""
    from harness.igvm.parser import scan
    from harness.igvm.rules import IgvmFormatError

    f, violations = scan(data)
    headers = find(f) if f is not None else []
    rest = [v for v in violations if not is_corim_violation(v, headers)]
    if getattr(violations, "not_shown", 0) and not rest:
        from harness.igvm.rules import Violation
        rest = [Violation("unknown-header-type", f"{len(violations) + violations.not_shown} "
                          "headers of unknown types")]
    if rest or f is None:
        raise IgvmFormatError.from_violation((rest or list(violations))[0], source)
    return (without_corim(f) if headers else f), headers
