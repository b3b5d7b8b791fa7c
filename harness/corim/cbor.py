"""CBOR in and out through ``cbor2``, with the bounds untrusted input needs.

A CoRIM taken from an IGVM file is untrusted: its size is checked against
:data:`~harness.igvm.limits.MAX_CORIM_BYTES` before a byte is decoded (so
at most that many objects are ever built), and its nesting against
:data:`~harness.igvm.limits.MAX_CORIM_DEPTH` after (cbor2 itself stops at
400 levels).  cbor2 decodes the semantic tags it knows (shared references
can make a cyclic value, tag 35 compiles a regular expression); the depth
walk is cycle-safe and the profile checks (:mod:`harness.corim.decode`)
accept only the types the profile uses, so such values are refused, never
used.  Every failure is one :class:`CorimError` line.
"""

from __future__ import annotations

import io

import cbor2

from harness.errors import HarnessError
from harness.igvm.limits import MAX_CORIM_BYTES, MAX_CORIM_DEPTH

CBORTag = cbor2.CBORTag


class CorimError(HarnessError):
    """A CoRIM or its signature is malformed or breaks the profile (exit status 1)."""

    exit_code = 1


def dumps(value) -> bytes:
    """Definite lengths, shortest integer forms, maps in the order given
    (the profile's documents list integer keys in ascending order)."""
    return cbor2.dumps(value)


def loads(data, what: str = "CoRIM"):
    """One CBOR item from untrusted bytes: bounded, no trailing bytes."""
    raw = bytes(data[:MAX_CORIM_BYTES + 1])
    if len(raw) > MAX_CORIM_BYTES:
        raise CorimError(f"{what}: {len(data)} bytes; the limit is {MAX_CORIM_BYTES} "
                         "(harness/igvm/limits.py MAX_CORIM_BYTES)")
    if not raw:
        raise CorimError(f"{what}: empty")
    stream = io.BytesIO(raw)
    try:
        value = cbor2.CBORDecoder(stream).decode()
        end = stream.tell()  # cbor2.loads would ignore what follows the first item
    except RecursionError:
        raise CorimError(f"{what}: not CBOR: nested too deeply") from None
    except Exception as exc:  # cbor2 raises many types on bad input; each is one line
        raise CorimError(f"{what}: not CBOR: {_short(exc)}") from None
    if end != len(raw):
        raise CorimError(f"{what}: {len(raw) - end} byte(s) after the CBOR item")
    depth = nesting(value)
    if depth > MAX_CORIM_DEPTH:
        raise CorimError(f"{what}: nested {depth} levels deep; the limit is {MAX_CORIM_DEPTH} "
                         "(harness/igvm/limits.py MAX_CORIM_DEPTH)")
    return value


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]


def nesting(value) -> int:
    """Depth of arrays, maps and tags (a scalar is 0), without recursion;
    a value met again (shared reference, cycle) is not walked twice."""
    deepest = 0
    seen: set[int] = set()
    stack = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, tuple, dict, CBORTag)):
            if id(v) in seen:
                continue
            seen.add(id(v))
            d += 1
            deepest = max(deepest, d)
            if d > MAX_CORIM_DEPTH:
                return d  # enough to refuse
            if isinstance(v, dict):
                for k, x in v.items():
                    stack.append((k, d))
                    stack.append((x, d))
            elif isinstance(v, CBORTag):
                stack.append((v.value, d))
            else:
                stack.extend((x, d) for x in v)
    return deepest


__all__ = ["CBORTag", "CorimError", "dumps", "loads", "nesting"]
