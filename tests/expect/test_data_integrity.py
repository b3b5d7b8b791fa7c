"""Integrity of the expectation data: every entry cites a QEMU source that
exists, regexes compile, deviations carry a reason and a reference, and the
data covers what the issue asks for.

The citations are checked against the QEMU source the harness downloaded
during set-up (the ``qemu_source`` fixture, tests/conftest.py; or
$IGVM_HARNESS_QEMU_SRC); they skip only when no source was downloaded.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.expect import table as T

TABLE = T.load()
SOURCES = T.all_sources(TABLE)


def _split(citation: str) -> tuple[str, str | None, str | None]:
    """(path, symbol, section) of 'path: symbol' or 'path#Section'."""
    if "#" in citation:
        path, section = citation.split("#", 1)
        return path.strip(), None, section.strip()
    if ": " in citation:
        path, symbol = citation.split(": ", 1)
        return path.strip(), symbol.strip(), None
    return citation.strip(), None, None


def test_every_expectation_has_a_qemu_source():
    for case in TABLE.cases:
        for platform, exps in case.expect.items():
            for e in exps:
                assert e.source, f"{case.id}/{platform} has no source"
                assert any(_split(s)[0].startswith(("docs/", "backends/", "target/", "hw/",
                                                    "system/", "accel/"))
                           for s in e.source), f"{case.id}/{platform}: no QEMU citation"


def test_deviations_have_reason_and_reference_and_differ():
    seen = 0
    for case in TABLE.cases:
        for platform, exps in case.expect.items():
            for e in exps:
                if e.deviation:
                    seen += 1
                    assert e.deviation.reason and e.deviation.reference
                    assert e.deviation.outcome != e.outcome or e.deviation.error != e.error, \
                        f"{case.id}/{platform}: deviation equals the expectation"
    assert seen >= 5


@pytest.mark.parametrize("where,citation", SOURCES, ids=[f"{w}:{c}" for w, c in SOURCES])
def test_citation_exists_in_qemu_tree(where, citation, qemu_source):
    path, symbol, section = _split(citation)
    f = qemu_source.tree / path
    assert f.is_file(), f"{where}: {path} does not exist in {qemu_source.tree}"
    text = f.read_text(errors="replace")
    if symbol:
        assert re.search(r"\b" + re.escape(symbol) + r"\b", text), \
            f"{where}: {symbol!r} not found in {path}"
    if section:
        assert section in text, f"{where}: section/table {section!r} not found in {path}"


def test_error_regexes_match_text_in_cited_sources(qemu_source):
    """Each 'aborts' regex citing QEMU code must have an alternative whose
    literal beginning (up to the first number or regex syntax) is a message
    present in the cited files (adjacent C string literals joined).
    Documented-only expectations (docs citations only) are exempt: the
    documentation gives no error text."""
    def messages(path: Path) -> str:
        return re.sub(r'"\s*\n\s*"', "", path.read_text(errors="replace"))

    checked = 0
    for case in TABLE.cases:
        for platform, exps in case.expect.items():
            for e in exps:
                pairs = [(e.outcome, e.error, e.source)]
                if e.deviation:
                    pairs.append((e.deviation.outcome, e.deviation.error, e.deviation.reference))
                for outcome, regex, cites in pairs:
                    code = [_split(c)[0] for c in cites if not c.startswith("docs/")]
                    if outcome != "aborts" or not code:
                        continue
                    corpus = "".join(messages(qemu_source.tree / p) for p in set(code))
                    prefixes = []
                    for alt in regex.split("|"):
                        alt = alt.replace("\\(", "(")
                        m = re.match(r"[A-Za-z _:,'/.-]+", alt)
                        lit = m.group(0) if m else ""
                        if lit != alt and lit and lit[-1].isalnum():
                            lit = lit.rsplit(" ", 1)[0]  # drop a word cut by a number
                        if len(lit.strip()) >= 10:
                            prefixes.append(lit.rstrip(" .:"))
                    assert prefixes, f"{case.id}/{platform}: /{regex}/ has no literal text"
                    assert any(p in corpus for p in prefixes), \
                        f"{case.id}/{platform}: none of {prefixes} appears in {code}"
                    checked += 1
    assert checked > 20


def test_platform_boundaries():
    p = TABLE.platforms
    assert p["native"].boundary is None
    for name in ("sev", "sev-es"):
        assert p[name].boundary.observable == ("cmdline", "board", "igvm")
    assert p["sev-snp"].boundary.observable == ("cmdline",)
    assert p["sev"].properties["policy"] == "0x1" and p["sev-es"].properties["policy"] == "0x5"


def test_coverage_of_the_issue():
    """The table covers what issue 5 lists (by header / recipe parameter)."""
    headers = {h for c in TABLE.cases for h in c.header}
    for h in ("PAGE_DATA", "VP_CONTEXT", "PARAMETER_AREA", "PARAMETER_INSERT", "VP_COUNT_PARAMETER",
              "ENVIRONMENT_INFO_PARAMETER", "MEMORY_MAP", "REQUIRED_MEMORY", "SNP_ID_BLOCK",
              "GUEST_POLICY", "SUPPORTED_PLATFORM", "UNKNOWN", "FIRMWARE", "FILE"):
        assert h in headers, h
    ids = {c.id for c in TABLE.cases}
    for cid in ("vmsa-gpa", "page-secrets", "platform-strongest-wins", "platform-only-sev-snp",
                "memory-map-overflow", "parameter-insert-undefined-area", "firmware-bios",
                "firmware-pflash", "id-block-multiple", "page-data-oversize",
                "page-non-ram-overlap", "vp-context-ap", "file-missing", "malformed"):
        assert cid in ids, cid
    assert sum(c.id.startswith("vmsa-field-") for c in TABLE.cases) >= 3
    # both forms for every platform
    for platform in T.PLATFORMS:
        forms = {c.form for c in TABLE.cases if platform in c.expect}
        assert forms == {"reset-vector", "vp-context"}, platform
