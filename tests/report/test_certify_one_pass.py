"""``certify`` reads an image's headers once (issue 19).

Every reader of header bytes is counted while the whole profile runs on a
65,536-page image declaring all four QEMU platforms: the scan's walk (each
call reads every header), replays of a parsed model (each a pass), and the
per-header reads of the lazy model (a header decoded, or its type read).
The scan must be the only pass; what the checks read besides it must stay
a few headers (the platform section), not a count that grows with the file.
"""

from __future__ import annotations

import pytest

from harness.certify import profile
from harness.igvm import lazy, parser
from harness.igvm import walk as walk_mod
from tests.untrusted import hostile

PAGES = 65_536


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """Four platforms and 65,536 4 KiB pages of distinct data (256 MiB)."""
    path = tmp_path_factory.mktemp("one-pass") / "big.igvm"
    path.write_bytes(hostile.distinct_pages(PAGES))
    return path


class Readers:
    """Counts of every way header bytes are read."""

    def __init__(self, monkeypatch) -> None:
        self.scans: list[int] = []      # headers each scan walked
        self.replays = 0                # replays of a model (each reads every header)
        self.decoded = 0                # headers decoded one at a time after the scan
        self.types_read = 0             # header types read by the lazy model (of_type)
        scanner_walk = parser._Scanner.walk
        replay = walk_mod.replay
        decode_at = parser._Decoder.decode_at
        type_runs = lazy.LazyHeaders.type_runs
        readers = self

        def counting_walk(scanner):
            try:
                scanner_walk(scanner)
            finally:
                readers.scans.append(len(scanner.offsets))

        def counting_replay(*a, **kw):
            readers.replays += 1
            return replay(*a, **kw)

        def counting_decode(decoder, pos):
            readers.decoded += 1
            return decode_at(decoder, pos)

        def counting_types(seq):
            for item in type_runs(seq):
                readers.types_read += item[2]
                yield item

        monkeypatch.setattr(parser._Scanner, "walk", counting_walk)
        monkeypatch.setattr(walk_mod, "replay", counting_replay)
        for module in ("harness.certify.survey", "harness.certify.checks",
                       "harness.measure.launch", "harness.measure.pages",
                       "harness.igvm.qemu_lint", "harness.expect.constructs"):
            mod = __import__(module, fromlist=["_"])
            if hasattr(mod, "replay"):
                monkeypatch.setattr(mod, "replay", counting_replay)
        monkeypatch.setattr(parser._Decoder, "decode_at", counting_decode)
        monkeypatch.setattr(lazy.LazyHeaders, "type_runs", counting_types)


def test_certify_reads_the_headers_once(image, monkeypatch, tmp_path):
    readers = Readers(monkeypatch)
    target = profile.prepare(image, "auto", boot=False, workdir=tmp_path / "work")
    report = profile.certify(target)
    verdicts = {c.id: c.verdict for c in report.checks}
    assert verdicts["spec.validate"] == "pass" and verdicts["qemu.lint"] == "pass"
    for p in ("sev", "sev-es", "sev-snp"):
        assert verdicts[f"{p}.measurement"] == "predicted"
        assert verdicts[f"{p}.directives"] == "pass"
    headers = PAGES + 4
    assert readers.scans == [headers], "one scan, and it read every header"
    assert readers.replays == 0, "no second pass over a parsed model"
    # besides the scan: the platform section (4 headers), read for the report
    assert readers.decoded + readers.types_read <= 16, (readers.decoded, readers.types_read)


def test_the_counters_see_a_second_pass(image, monkeypatch):
    """The counting itself: a replay and a header-by-header read are seen."""
    readers = Readers(monkeypatch)
    f = parser.load(image)
    from harness.measure.launch import predict

    predict(f, "sev", 1)  # a replay of the parsed model
    sum(1 for _ in f.directives.of_type(0x304))
    assert readers.scans == [PAGES + 4] and readers.replays == 1
    assert readers.types_read >= PAGES


def _images():
    """Files the survey must read as the checks' own readers do: a
    multi-platform OVMF wrap (synthetic image, tests/ovmf_images.py) and a
    builder file of every directive kind with pages for some platforms."""
    from harness.igvm import ovmf, wrap_ovmf
    from tests.format.test_walk import _mixed
    from tests.ovmf_images import synthetic_ovmf

    yield "ovmf-wrap", wrap_ovmf.wrap(ovmf.read(synthetic_ovmf()), vcpus=2)
    yield "mixed", _mixed().build()


@pytest.mark.parametrize("name,data", list(_images()), ids=lambda v: v if isinstance(v, str) else "")
def test_the_survey_reads_what_the_checks_own_readers_read(name, data, tmp_path):
    """The one walk's consumers against the readers of the parsed model that
    certify used before (each its own pass): constructs, lint, VP contexts,
    the console payload and the launch digests agree."""
    from harness.certify import console
    from harness.certify.model import QEMU_PLATFORMS
    from harness.certify.survey import survey
    from harness.errors import HarnessError
    from harness.expect import constructs
    from harness.igvm import qemu_lint
    from harness.measure.launch import predict

    path = tmp_path / f"{name}.igvm"
    path.write_bytes(data)
    f, violations, s = survey(parser.read(path), "auto", 2)
    assert s.complete and set(s.platforms) == {QEMU_PLATFORMS[t] for t in f.platform_types()
                                               if t in QEMU_PLATFORMS}
    assert s.linter.findings() == qemu_lint.lint(f)
    for pname, ps in s.platforms.items():
        mask = ps.mask
        assert ps.constructs.result() == constructs.used(f, mask)
        assert ps.contexts.count == len(f.vp_contexts(mask))
        assert ps.console.kind == console.detect(f, mask)
        if ps.digest is None:
            continue
        try:
            expected = predict(f, pname, 2).digest
        except HarnessError as exc:
            expected = str(exc)
        try:
            got = ps.prediction().digest
        except HarnessError as exc:
            got = str(exc)
        assert got == expected, pname
    assert any(ps.console.kind == "ovmf" for ps in s.platforms.values()) == (name == "ovmf-wrap")
