"""Text made safe for every report format, in one place.

Console output is whatever a guest wrote: firmware draws its menus with
ANSI/VT100 sequences (OVMF's terminal driver, edk2
MdeModulePkg/Universal/Console/TerminalDxe, sends ``ESC[2J``, ``ESC[0m``,
``ESC[25;01H``, ...), and any byte can arrive.  XML 1.0 forbids most C0
control characters, lone surrogates and U+FFFE/U+FFFF (XML 1.0 section 2.2,
production ``Char``), so copying such text into JUnit XML makes the file
unreadable; in HTML and JSON it is noise.  :func:`clean` turns one string
into readable text, :func:`safe` applies it to every string of a document,
and every writer (JSON, JUnit XML, HTML, the dashboard) calls :func:`safe`
before it renders.

What :func:`clean` does:

* turns a cursor move to a row (CUP, ``ESC [ row ; col H``, which menus use
  instead of line feeds) into a line break, unless a line starts there, so
  text drawn on different rows stays on different lines;
* removes the other escape sequences: CSI (``ESC [`` ... final byte, and the 8-bit
  ``0x9B`` form), OSC / DCS / SOS / PM / APC strings up to their terminator
  (BEL or ST; at most to the end of the line), and the short ``ESC`` sequences (``ESC ( B``, ``ESC 7``,
  ``ESC c``, ...) -- ECMA-48 sections 5.3-5.6;
* turns CR LF and a lone CR into LF, keeps TAB and LF, and drops every other
  C0 control, DEL and the C1 controls;
* replaces what XML cannot carry (lone surrogates, e.g. from a
  ``surrogateescape`` decode, U+FFFE, U+FFFF) with U+FFFD.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from harness.report.model import Report

_ESC = "\x1b"
#: ECMA-48: CSI = ESC [ (or C1 0x9B), parameter bytes 0x30-0x3F,
#: intermediate bytes 0x20-0x2F, final byte 0x40-0x7E.  Control strings
#: (OSC ESC ], DCS ESC P, SOS ESC X, PM ESC ^, APC ESC _ and their C1 forms)
#: run to ST (ESC \ or 0x9C) or BEL; an unterminated one to the end of its
#: line (a control string holds no line feed: ECMA-48 8.3.89 command string).
#: Other escape sequences: ESC, intermediates 0x20-0x2F, final 0x30-0x7E.
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]?"
)
#: CUP / HVP (ECMA-48 8.3.21, 8.3.64): ESC [ row ; col H or f
_CURSOR_ROW = re.compile(r"(?:\x1b\[|\x9b)[0-9;]*[Hf]")
_ROW = "\x1e"  # stands for a CUP while the rest is cleaned (RS: dropped from input first)
_ROW_AT_LINE_START = re.compile(r"(^|\n)\x1e+")
_NEWLINE = re.compile(r"\r\n?")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_NOT_XML = re.compile(r"[\ud800-\udfff\ufffe\uffff]")
REPLACEMENT = "\ufffd"


def clean(text: str) -> str:
    """``text`` without escape sequences or control characters, and with
    nothing XML 1.0 cannot hold."""
    if text.isprintable():  # the common case: nothing to do
        return text
    text = _CURSOR_ROW.sub(_ROW, text.replace(_ROW, ""))
    text = _SEQUENCE.sub("", text)
    text = _NEWLINE.sub("\n", text)
    text = _ROW_AT_LINE_START.sub(r"\1", text).replace(_ROW, "\n")
    text = _CONTROL.sub("", text)
    return _NOT_XML.sub(REPLACEMENT, text)


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
