"""What a reader sees of a serial console: terminal control taken out.

Console output is whatever a guest wrote: firmware draws its menus with
ANSI/VT100 sequences (OVMF's terminal driver, edk2
MdeModulePkg/Universal/Console/TerminalDxe, sends ``ESC[2J``, ``ESC[0m``,
``ESC[25;01H``, ...), and any byte can arrive.  :func:`plain` is the one
cleaner every layer uses: the runner's progress lines and messages
(harness.qemu), the boot-manager lines compared between IGVM and ``-bios``
(harness.guests.firmware), and the reports (harness.report.text, which also
removes what XML cannot hold).  It lives below every layer that needs it.

What :func:`plain` does:

* turns a cursor move to a row (CUP, ``ESC [ row ; col H``, which menus use
  instead of line feeds) into a line break, unless a line starts there, so
  text drawn on different rows stays on different lines;
* removes the other escape sequences: CSI (``ESC [`` ... final byte, and the 8-bit
  ``0x9B`` form), OSC / DCS / SOS / PM / APC strings up to their terminator
  (BEL or ST; at most to the end of the line), and the short ``ESC`` sequences (``ESC ( B``, ``ESC 7``,
  ``ESC c``, ...) -- ECMA-48 sections 5.3-5.6;
* turns CR LF and a lone CR into LF, keeps TAB and LF, and drops every other
  C0 control, DEL and the C1 controls.
"""

from __future__ import annotations

import re

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


def plain(text: str) -> str:
    """``text`` without escape sequences or control characters (TAB and LF
    kept, rows drawn by cursor moves on lines of their own)."""
    if text.isprintable():  # the common case: nothing to do
        return text
    text = _CURSOR_ROW.sub(_ROW, text.replace(_ROW, ""))
    text = _SEQUENCE.sub("", text)
    text = _NEWLINE.sub("\n", text)
    text = _ROW_AT_LINE_START.sub(r"\1", text).replace(_ROW, "\n")
    return _CONTROL.sub("", text)


def last_line(text: str, limit: int = 160) -> str:
    """The last non-empty line of ``text`` as a reader sees it (at most
    ``limit`` characters): what a progress note shows of a console."""
    for line in reversed(plain(text).splitlines()):
        if line.strip():
            return line.strip()[:limit]
    return ""
