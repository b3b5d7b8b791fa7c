"""Validate IGVM bytes against the specification's rules.

``validate(data)`` applies the checks of the reference Rust parser
(microsoft/igvm ``IgvmFile::new_from_binary``, which QEMU uses through the
igvm C library) and returns every violation found, each with a stable rule
id (:mod:`harness.igvm.rules`), the header index (0-based, counting every
variable header in file order) and the byte offset (of the header, or of
the fixed-header field).  An empty list means the reference parser would
accept the file.  Violations that make the rest unreadable (bad fixed
header, truncated header walk) end the scan.

``strict=True`` adds rules the specification states but the reference
parser does not enforce (``rules.STRICT_RULES``): zero padding, variable
header offset, unique and declared compatibility masks, reserved flag
bits, 2 MiB page alignment, VP context reserved field.

``platform=`` mirrors the reference parser's isolation filter: headers
whose compatibility mask excludes that platform are still decoded and
checked on their own, but skipped by the whole-file rules.

Where this validator differs from the reference parser:

* stricter: ``relocation-alignment-invalid`` also fires for alignment 0
  (the reference divides by zero and panics); ``vbs-vp-context-invalid``
  turns the reference's ``assert!``s (VBS VP index 0, one VTL) into a
  violation; an overlapping check for zero-sized relocation regions treats
  them as empty (the reference's ``start + size - 1`` underflows);
* looser: VBS VP-context register names are not checked against the
  reference's supported-register tables (``UnsupportedX64Register``);
* CoRIM headers (0x104, 0x105) are ``unknown-header-type``, as in the
  reference built without its ``corim`` feature (the igvm C library).
"""

from __future__ import annotations

from harness.igvm.limits import MAX_VIOLATIONS
from harness.igvm.parser import scan
from harness.igvm.rules import RULES, Violation, Violations


def validate(data, platform=None, strict: bool = False,
             limit: int | None = MAX_VIOLATIONS) -> Violations:
    """The violations in ``data`` (bytes, memoryview or mmap): all of them,
    or the first ``limit`` and the count of the rest (``.not_shown``)."""
    _, violations = scan(data, platform=platform, strict=strict, limit=limit)
    return violations


def is_valid(data, **kw) -> bool:
    return not validate(data, **kw)


__all__ = ["validate", "is_valid", "Violation", "Violations", "RULES"]
