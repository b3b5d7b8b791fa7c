"""Console text made safe for JSON, JUnit XML and HTML (harness.report.text).

The sequences are the ones OVMF's terminal driver sends on a serial console
(edk2 MdeModulePkg/Universal/Console/TerminalDxe/TerminalConOut.c: clear
screen ESC[2J, cursor position ESC[row;colH with two-digit fields, SGR
attributes ESC[0m / ESC[1m / ESC[33m, cursor on/off ESC[?25h/l), plus what
any guest can send: BEL, backspace, NUL, OSC titles, C1 controls, bytes
that are not UTF-8.  What XML 1.0 may hold is its production ``Char``
(section 2.2): TAB, LF, CR, U+0020-U+D7FF, U+E000-U+FFFD, U+10000-U+10FFFF.
"""

from __future__ import annotations

import json
import re
import xml.dom.minidom

import pytest

from harness.report import html, text, writers
from harness.report.model import Check, Evidence, Log

from .conftest import make_report

OVMF_SCREEN = ("\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01H\x1b[0m\x1b[35m\x1b[40m"
               "BdsDxe: loading Boot0001 \"UEFI Shell\"\r\n\x1b[0m\x1b[37m\x1b[40m"
               "\x1b[25;01H\x1b[?25l\x1b[1m\x1b[33mShell> \x1b[0m\x1b[?25h")
#: XML 1.0 Char, as a regex over the text (every character must match).
XML_CHAR = re.compile("[\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")


@pytest.mark.parametrize("raw, clean", [
    (OVMF_SCREEN, "BdsDxe: loading Boot0001 \"UEFI Shell\"\nShell> "),
    ("a\x1b]0;OVMF title\x07b", "ab"),                 # OSC ended by BEL
    ("a\x1b]2;t\x1b\\b", "ab"),                        # OSC ended by ST
    ("a\x1bPqdata\x1b\\b", "ab"),                      # DCS string
    ("a\x1b(Bb\x1b7c\x1b8d\x1bce", "abcde"),           # charset, save/restore, reset
    ("a\x9b1;2Kb\x9dx\x9cc", "abc"),                    # 8-bit CSI and OSC
    ("ring\x07 back\x08space nul\x00 del\x7f", "ring backspace nul del"),
    ("cr\r\nlf\ncr\rx", "cr\nlf\ncr\nx"),
    ("tab\tkept", "tab\tkept"),
    ("bad\udcff byte \ufffe\uffff", "bad\ufffd byte \ufffd\ufffd"),
    ("cut\x1b[25;0", "cut"),                            # a sequence cut off at the end
    ("a\x1b]0;unterminated\nnext line", "a\nnext line"),  # never past the line
    ("plain text, été ✓", "plain text, été ✓"),
    # a menu drawn by cursor moves keeps its rows apart
    ("\x1b[05;10HBoot Manager\x1b[06;10HUEFI Shell\x1b[07;10Hx", "Boot Manager\nUEFI Shell\nx"),
    ("a\r\n\x1b[25;01Hb", "a\nb"),                  # no empty line where one starts anyway
    ("rs\x1ekept apart", "rskept apart"),              # a raw RS is dropped, not a line break
])
def test_clean(raw, clean):
    assert text.clean(raw) == clean
    assert XML_CHAR.fullmatch(text.clean(raw))


def test_every_code_point_below_0x100_leaves_valid_xml():
    raw = "".join(map(chr, range(0x100))) + "\ud800\udfff\ufffe\uffff"
    assert XML_CHAR.fullmatch(text.clean(raw))


def test_safe_copies_nested_documents_keys_included():
    doc = {"a\x1b[0m": ["x\x07", ("y\x1b[2J",), 3, None], "n": 1.5}
    assert text.safe(doc) == {"a": ["x", ["y"], 3, None], "n": 1.5}


def _dirty_report():
    report = make_report({"native.boot": "pass"})
    dirty = OVMF_SCREEN + "\x00\x07\udcff\x1b]0;t\x07"
    report.checks[0].message = "booted: " + dirty
    report.checks[0].evidence = Evidence(console=dirty, logs=[Log("QEMU stderr", dirty)],
                                         command=["qemu", "-name", "x\x1b[0m"],
                                         details={"tail": dirty})
    report.checks.append(Check("native.other", "other\x08", "fail", message=dirty))
    return report


def test_every_writer_gets_safe_text():
    report = _dirty_report()
    junit = writers.to_junit(report)
    xml.dom.minidom.parseString(junit)  # raised ExpatError before
    assert "Shell&gt; " in junit and "\x1b" not in junit and "\x07" not in junit
    doc = json.loads(writers.to_json(report))
    assert doc["checks"][0]["evidence"]["console"].endswith("Shell> \ufffd")
    assert "\x1b" not in json.dumps(doc, ensure_ascii=False)
    page = html.render_report(report)
    assert "\x1b" not in page and "\x00" not in page and "Shell&gt; " in page
    # the report object itself is left alone
    assert report.checks[0].evidence.console.startswith("\x1b[2J")


def test_write_all_writes_the_three_files(tmp_path):
    paths = writers.write_all(_dirty_report(), tmp_path)
    xml.dom.minidom.parse(str(paths["junit"]))
    assert "\x1b" not in paths["html"].read_text() + paths["json"].read_text()


def test_dashboard_texts_are_safe(tmp_path):
    from harness.report import merge

    src = tmp_path / "r.json"
    src.write_text(writers.to_json(make_report({"native.boot": "pass"})))
    dash = merge.merge_files([src])
    dash["cells"][0]["history"][0]["message"] = "x\x1b[0m\x07y"
    paths = merge.write_dashboard(dash, tmp_path / "d")
    assert "\x1b" not in paths["html"].read_text()
    assert "\\u001b" not in paths["json"].read_text()
