"""The load-verdict cases of CoRIM headers (harness/expect/data/cases.toml, corim-*):
their library citations exist, and the error codes they expect are the ones the
libraries define for the refusal each case describes.  (The cells themselves run
against the real QEMU in suites/matrix.)"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

import pytest

from harness.expect import table as T

REPO = Path(__file__).resolve().parents[2]
TABLE = T.load()
CASES = [c for c in TABLE.cases if c.id.startswith("corim-")]


def _registry_crate(name: str) -> Path | None:
    home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    found = sorted(glob.glob(str(home / "registry" / "src" / "*" / name)))
    return Path(found[-1]) if found else None


def _resolve(citation: str) -> tuple[Path | None, str]:
    """(file, symbol) of 'libigvm: path: symbol' or 'igvm 0.5.0: crate/src/x.rs: symbol'."""
    origin, path, symbol = (x.strip() for x in citation.split(": ", 2))
    if origin == "libigvm":
        return REPO / path, symbol
    assert origin == "igvm 0.5.0", citation
    crate, rest = path.split("/", 1)        # microsoft/igvm layout: igvm/src/.., igvm_defs/src/..
    root = _registry_crate(f"{crate}-0.5.0")
    return (root / rest if root else None), symbol


def test_every_corim_case_cites_both_libraries():
    assert {c.id for c in CASES} == {"corim-document", "corim-document-optional", "corim-signed",
                                     "corim-signed-optional"}
    for case in CASES:
        for exps in case.expect.values():
            for e in exps:
                origins = {s.split(": ", 1)[0] for s in e.library}
                assert origins == {"libigvm", "igvm 0.5.0"}, case.id


def test_library_citations_exist():
    """The harness's own library always; the igvm crate's where cargo has its source
    (set-up's Rust helper fetches it; a machine without it checks the own library only)."""
    checked = 0
    for case in CASES:
        for e in case.expect["native"]:
            for citation in e.library:
                path, symbol = _resolve(citation)
                if path is None:
                    continue
                text = path.read_text(errors="replace")
                assert re.search(r"\b" + re.escape(symbol) + r"\b", text), citation
                checked += 1
    assert checked >= len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_expected_codes_are_the_libraries_codes(case):
    """-10 / -17 are IGVMAPI_INVALID_BINARY_INITIALIZATION_HEADER /
    IGVMAPI_INVALID_BINARY_VARIABLE_HEADER_SECTION in the C API's header."""
    header = (REPO / "libigvm/include/igvm/igvm.h").read_text()
    codes = dict((n, int(v)) for n, v in re.findall(r"(IGVMAPI_\w+)\s*=\s*(-?\d+)", header))
    optional = bool(case.params.get("corim_optional"))
    want = codes["IGVMAPI_INVALID_BINARY_VARIABLE_HEADER_SECTION" if optional
                 else "IGVMAPI_INVALID_BINARY_INITIALIZATION_HEADER"]
    for exps in case.expect.values():
        assert exps[0].error.endswith(f": {want}$")
