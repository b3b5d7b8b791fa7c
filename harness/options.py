"""Parsers for the options several commands share (argparse ``type=``s).

One definition each, so that ``measure``, ``certify`` and the pytest plugin
accept the same spellings (``--vcpus 0x10`` was taken by ``measure`` and
refused by ``certify``) and refuse the same values in the same words.
Importing this module costs nothing beyond argparse.  It sits on the bottom
floor and imports no layer: a parser that needs a layer's bound lives with
the bound (``--vcpus``: :func:`harness.igvm.limits.vcpus`).
"""

from __future__ import annotations

import argparse


def integer(text: str) -> int:
    """An integer in any base Python spells (``16``, ``0x10``, ``0o20``, ``0b10000``)."""
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def unsigned(bits: int):
    """An argparse type for an unsigned field of ``bits`` bits: a policy,
    CPUID value or feature mask outside it cannot reach the firmware."""
    def parse(text: str) -> int:
        value = integer(text)
        if not 0 <= value < 1 << bits:
            raise argparse.ArgumentTypeError(f"{text} is not a {bits}-bit unsigned value")
        return value
    parse.__name__ = f"u{bits}"
    return parse


def seconds(text: str) -> float:
    """--boot-timeout and the like: a positive number (a zero, negative or
    NaN deadline would turn every boot into a timeout)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value
