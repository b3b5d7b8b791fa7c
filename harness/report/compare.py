"""Two runs of the same suite, verdict by verdict: does parallel (or any
other change of *how* the suite ran) change *what* it found?

``igvm-harness report compare A B``: A and B are pytest JUnit XML files
(``--junitxml``) or matrix JSON files (``reports/matrix/matrix-*.json``),
both of one kind.  Per test (JUnit: the test's name; matrix: the cell id)
the verdict must be equal:

* JUnit: passed, failed, error, xfailed, or skipped *with its reason*
  (a skip is a claim: the same skip for another reason is another verdict);
* matrix: the cell's status (pass, fail, xfail, boundary, skip,
  suite-error) and the mode it ran in (native-kvm, tcg-fallback, ...).

Texts are compared with their run-specific parts taken out: temporary
paths (pytest's basetemp, xdist's ``popen-gwN``), the QEMU socket
directory, durations.  A test present in one file only is a difference
too.  Exit status 0 when equal, 1 when not, 2 for unreadable input.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError

#: Run-specific text, replaced before two texts are compared.
_VOLATILE = [
    (re.compile(r"/tmp/\S*"), "<tmp>"),
    (re.compile(r"/var/tmp/\S*"), "<tmp>"),
    (re.compile(r"\b\d+(?:\.\d+)? ?s\b"), "<secs>"),
    (re.compile(r"@\S+$"), ""),      # a pytest-xdist group suffix on a name
]


def normalised(text: str) -> str:
    for pattern, repl in _VOLATILE:
        text = pattern.sub(repl, text)
    return " ".join(text.split())


@dataclass(frozen=True)
class Difference:
    test: str
    a: str | None            # None: absent from A
    b: str | None

    def line(self) -> str:
        return f"{self.test}: {self.a or '(absent)'} != {self.b or '(absent)'}"


def junit_verdicts(path: Path) -> dict[str, str]:
    """test -> verdict of a pytest JUnit XML file."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise HarnessError(f"{path}: not a readable JUnit XML file ({exc})") from None
    out: dict[str, str] = {}
    for case in root.iter("testcase"):
        name = normalised(f"{case.get('classname', '')}::{case.get('name', '')}")
        verdict = "passed"
        for child in case:
            tag = child.tag
            message = normalised(child.get("message") or "")
            if tag == "failure":
                verdict = "failed"
            elif tag == "error":
                verdict = "error"
            elif tag == "skipped":
                kind = "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
                verdict = f"{kind}: {message}" if kind == "skipped" else kind
        if verdict != "passed" or name not in out:
            out[name] = verdict
    return out


def matrix_verdicts(path: Path) -> dict[str, str]:
    """cell id -> status (mode) of a matrix JSON report."""
    try:
        data = json.loads(Path(path).read_text())
        cells = data["cells"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HarnessError(f"{path}: not a matrix JSON report ({exc})") from None
    return {c["cell_id"]: f"{c['status']} ({c['mode']})" for c in cells}


def _kind(path: Path) -> str:
    return "matrix" if Path(path).suffix == ".json" else "junit"


def verdicts(path: Path) -> dict[str, str]:
    return matrix_verdicts(path) if _kind(path) == "matrix" else junit_verdicts(path)


def compare(a: dict[str, str], b: dict[str, str]) -> list[Difference]:
    return [Difference(t, a.get(t), b.get(t)) for t in sorted(a.keys() | b.keys())
            if a.get(t) != b.get(t)]


def compare_files(a: Path, b: Path) -> tuple[int, list[Difference]]:
    """(number of tests compared, differences) of two files of one kind."""
    if _kind(a) != _kind(b):
        raise HarnessError(f"{a} and {b} are not of one kind (JUnit XML or matrix JSON)")
    va, vb = verdicts(a), verdicts(b)
    return len(va.keys() | vb.keys()), compare(va, vb)
