"""QEMU version numbers and the small range syntax of the expectation data.

Ranges are comma-separated clauses, all of which must hold:
``">=10.1"``, ``">=10.1,<10.3"``, ``"==10.2.2"``.  Versions compare as
integer tuples padded with zeros (``10.2 == 10.2.0``).
"""

from __future__ import annotations

import operator
import re

from harness.errors import HarnessError

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
        "==": operator.eq, "!=": operator.ne}
_CLAUSE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(\d+(?:\.\d+){0,2})\s*$")


class VersionRangeError(HarnessError):
    """A malformed version or range in the expectation data."""

    exit_code = 2


def parse_version(text: str) -> tuple[int, int, int]:
    """``"10.2.2"`` -> ``(10, 2, 2)``; trailing text such as ``-rc1`` or a
    Debian suffix after the numbers is ignored."""
    m = re.match(r"^\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?", str(text))
    if not m:
        raise VersionRangeError(f"not a QEMU version: {text!r}")
    return tuple(int(g) if g else 0 for g in m.groups())  # type: ignore[return-value]


def check_range(spec: str) -> None:
    """Raise :class:`VersionRangeError` unless ``spec`` is well formed."""
    if not str(spec).strip():
        raise VersionRangeError("empty QEMU version range")
    for clause in str(spec).split(","):
        if not _CLAUSE.match(clause):
            raise VersionRangeError(f"bad QEMU version range clause {clause!r} in {spec!r}")


def in_range(version: str | tuple[int, ...], spec: str | None) -> bool:
    """True when ``version`` satisfies every clause of ``spec`` (None: any)."""
    if spec is None:
        return True
    check_range(spec)
    v = parse_version(version) if isinstance(version, str) else tuple(version)
    v = tuple(list(v) + [0] * (3 - len(v)))[:3]
    for clause in spec.split(","):
        op, num = _CLAUSE.match(clause).groups()  # type: ignore[union-attr]
        if not _OPS[op](v, parse_version(num)):
            return False
    return True
