"""Text made safe for every report format, in one place.

Console output is whatever a guest wrote (escape sequences, any byte), and
XML 1.0 forbids most C0 control characters, lone surrogates and
U+FFFE/U+FFFF (XML 1.0 section 2.2, production ``Char``), so copying such
text into JUnit XML makes the file unreadable; in HTML and JSON it is noise.
:func:`clean` turns one string into readable text: the terminal control
goes (:func:`harness.terminal.plain`, the one console cleaner of the
harness, which says what it removes), and what XML cannot carry (lone
surrogates, e.g. from a ``surrogateescape`` decode, U+FFFE, U+FFFF) becomes
U+FFFD.  :func:`safe` applies it to every string of a document, and every
writer (JSON, JUnit XML, HTML, the dashboard) calls :func:`safe` before it
renders.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from harness.report.model import Report
from harness.terminal import plain

_NOT_XML = re.compile(r"[\ud800-\udfff\ufffe\uffff]")
REPLACEMENT = "\ufffd"


def clean(text: str) -> str:
    """``text`` without escape sequences or control characters, and with
    nothing XML 1.0 cannot hold."""
    if text.isprintable():  # the common case: nothing to do
        return text
    return _NOT_XML.sub(REPLACEMENT, plain(text))


def safe(value: Any) -> Any:
    """A copy of a JSON-like document (dicts, lists, scalars, dataclasses)
    with :func:`clean` applied to every string, keys included."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {safe(k): safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [safe(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return safe(dataclasses.asdict(value))
    return value


def safe_report(report: Report) -> Report:
    """The report with every string made safe (a new object; the input is
    left alone)."""
    return Report.from_dict(safe(report.to_dict()))
