"""Matrix fixtures and cells without QEMU: every cell's fixture builds, is a
well-formed IGVM file where the case means it to be, declares the platforms
the case asks for and carries VMSAs QEMU's allow-list accepts unless the
case breaks one on purpose.  Also the report renderers."""

from __future__ import annotations

import json
import shutil

import pytest

from harness.expect import table as T
from harness.expect import verdict as V
from harness.igvm.defs import HeaderType, KVM_VMSA_GPA, PlatformType
from harness.igvm.vmsa import SevEsVmsa
from harness.matrix import cells as C
from harness.matrix import recipes as R
from harness.matrix import report

TABLE = T.load()
ALL = C.generate(TABLE, syntaxes=("cfg",))
#: cases whose file is malformed on purpose (the parser must refuse them)
MALFORMED = {"page-data-oversize", "parameter-insert-undefined-area", "header-unknown-type",
             "malformed", "memory-map-overflow",
             # CoRIM headers: types the igvm C library refuses (harness/corim, cases corim-*)
             "corim-document", "corim-document-optional", "corim-signed", "corim-signed-optional"}

binutils = pytest.mark.skipif(not all(shutil.which(t) for t in ("as", "ld", "objcopy", "nm")),
                              reason="binutils (as, ld, objcopy, nm) not installed")


@pytest.fixture(scope="module")
def guests():
    from harness.matrix.guests import guest_images
    return guest_images()


def _ctx(cell, tmp_path, guests):
    return R.Context(case_id=cell.case.id, form=cell.case.form, platform=cell.platform,
                     params=cell.case.params, workdir=tmp_path, guests=guests, rule=cell.rule)


def test_cells_cover_every_expectation():
    n = sum(len(c.expect) for c in TABLE.cases if c.recipe != "mutator")
    assert len([c for c in ALL if c.case.recipe != "mutator"]) == n
    rules = C.mutator_rules()
    assert rules, "harness.igvm.mutate.MUTATORS is empty"
    assert len([c for c in ALL if c.case.recipe == "mutator"]) == 4 * len(rules)
    assert set(C.mutator_rules("reference")) | set(C.mutator_rules("strict")) == set(rules)
    assert C.mutator_rules("strict") and C.mutator_rules("reference")
    both = C.generate(TABLE)
    assert not any(c.platform == "native" and c.syntax == "sev-guest" for c in both)
    assert len(both) == len(ALL) + len([c for c in ALL if c.platform != "native"])


def test_winner_is_the_strongest_supported():
    # backends/igvm.c qigvm_supported_platform_compat_mask + sev.c cgs_check_support
    every = ["native", "sev", "sev-es", "sev-snp"]
    assert [R.winner(every, p) for p in every] == every
    assert R.winner(["sev-es"], "sev") is None
    assert R.winner(["sev-es"], "sev-snp") == "sev-es"
    assert R.winner(["sev"], "native") is None
    assert R.winner(["native"], "sev-snp") == "native"


@binutils
@pytest.mark.parametrize("cell", [c for c in ALL if c.case.recipe == "guest"],
                         ids=lambda c: c.id)
def test_guest_fixture_builds(cell, tmp_path, guests):
    from harness.igvm.parser import parse
    fx = R.build("guest", _ctx(cell, tmp_path, guests))
    data = fx.igvm_path.read_bytes()
    if cell.case.id in MALFORMED:
        with pytest.raises(Exception):
            parse(data)
        return
    f = parse(data)
    declared = cell.case.params.get("platforms", [cell.platform])
    assert sorted(p.platform_type for p in f.platforms) == sorted(
        int(R.PLATFORM_TYPES[p]) for p in declared)
    ctxs = [d for d in f.directives if d.TYPE == HeaderType.VP_CONTEXT]
    pages = {d.gpa for d in f.directives if d.TYPE == HeaderType.PAGE_DATA}
    assert 0x100000 in pages  # payload64 in both forms
    if cell.case.form == "reset-vector":
        assert not ctxs and R.nat.RESET_PAGE_GPA in pages
        return
    assert ctxs
    for d in ctxs:
        plat = next(p for p in f.platforms if p.compatibility_mask == d.compatibility_mask)
        if plat.platform_type in (PlatformType.NATIVE, PlatformType.SEV):
            assert len(bytes(d.data).rstrip(b"\0")) <= 232  # native context layout
            continue
        vmsa = SevEsVmsa.from_bytes(bytes(d.data))
        bad = vmsa.qemu_unsupported_fields()
        field = cell.case.params.get("vmsa", {}).get("field")
        assert bad == ([field] if field else []), bad
        want_gpa = cell.case.params.get("vmsa", {}).get("gpa", KVM_VMSA_GPA)
        assert d.gpa == want_gpa


@binutils
def test_sev_page_tables_carry_the_c_bit(tmp_path, guests):
    tables = R.page_tables(47)
    for gpa, page in tables.items():
        first = int.from_bytes(page[:8], "little")
        assert first & 1 and first >> 47 & 1, hex(gpa)
    assert not any(int.from_bytes(p[:8], "little") >> 47 & 1 for p in R.page_tables(None).values())


@binutils
def test_mutator_and_file_recipes(tmp_path, guests):
    from harness.igvm.parser import parse
    cell = next(c for c in ALL if c.case.recipe == "mutator")
    fx = R.build("mutator", _ctx(cell, tmp_path, guests))
    with pytest.raises(Exception):
        parse(fx.igvm_path.read_bytes())
    missing = next(c for c in ALL if c.case.recipe == "missing-file")
    assert not R.build("missing-file", _ctx(missing, tmp_path, guests)).igvm_path.exists()
    unread = next(c for c in ALL if c.case.recipe == "unreadable-file")
    assert R.build("unreadable-file", _ctx(unread, tmp_path, guests)).igvm_path.is_dir()


def test_unbuildable_fixture_is_a_fixture_error(tmp_path):
    cell = next(c for c in ALL if c.case.id == "page-normal")
    with pytest.raises(R.FixtureError):
        R.build("guest", R.Context("x", "reset-vector", "native", {"platforms": ["mars"]},
                                   tmp_path, {}))
    with pytest.raises(R.FixtureError):   # no payloads at all
        R.build("guest", _ctx(cell, tmp_path, {}))
    with pytest.raises(R.FixtureError):
        R.build("no-such-recipe", _ctx(cell, tmp_path, {}))


def test_report_renderers():
    from harness.matrix.execute import CellResult
    rows = [CellResult("page-normal/native/cfg", "page-normal", "t", ["PAGE_DATA"], "reset-vector",
                       "native", "cfg", None, "native-tcg", V.PASS, "boots", "guest booted"),
            CellResult("vp-context/sev/cfg", "vp-context", "t", ["VP_CONTEXT"], "vp-context",
                       "sev", "cfg", None, "tcg-fallback", V.BOUNDARY, "boundary", "exit 1 | x"),
            CellResult("firmware-bios/native/cfg", "firmware-bios", "t", ["FIRMWARE"],
                       "reset-vector", "native", "cfg", None, "native-tcg", V.XFAIL, "aborts",
                       "booted", reason="known deviation: ignored",
                       reference=["hw/i386/pc_sysfw.c: pc_system_firmware_init"])]
    c = report.counts(rows)
    assert c["native"]["pass"] == 1 and c["native"]["xfail"] == 1 and c["sev"]["boundary"] == 1
    lines = report.terminal_lines(rows, {"qemu_version": "10.2.2"})
    assert any("BOUND" in l for l in lines) and any(l.startswith("XFAIL") for l in lines)
    md = report.markdown(rows)
    assert "exit 1 \\| x" in md and "**boundary**" in md
    js = json.loads(json.dumps(report.to_json(rows)))
    assert js["schema"] == report.SCHEMA and len(js["cells"]) == 3


def test_report_files_carry_no_escape_sequences(tmp_path):
    # a hung cell's console tail as OVMF's terminal driver writes it
    from harness.matrix.execute import CellResult
    tail = "\x1b[2J\x1b[01;01HBdsDxe: loading Boot0001\r\n\x07"
    rows = [CellResult("page-normal/native/cfg", "page-normal", "t", ["PAGE_DATA"],
                       "reset-vector", "native", "cfg", None, "native-tcg", V.FAIL, "boots",
                       f"hung; console tail: {tail}")]
    jp, mp = report.write(rows, tmp_path, "m")
    for path in (jp, mp):
        text = path.read_text()
        assert "\x1b" not in text and "\\u001b" not in text and "\x07" not in text
    # the cursor move to row 1 is a line break (harness.report.text)
    assert json.loads(jp.read_text())["cells"][0]["observed"] == \
        "hung; console tail: \nBdsDxe: loading Boot0001\n"


def test_terminal_summary_says_each_reason_once_and_fits_a_screen_under_q():
    from harness.matrix.execute import CellResult
    reason = "known deviation: " + "the reference parser does not enforce this rule " * 3
    rows = [CellResult(f"malformed[r{i}]/{p}/cfg", "malformed", "t", ["FILE"], "reset-vector", p,
                       "cfg", f"r{i}", "native-tcg", V.XFAIL, "aborts", "booted", reason=reason,
                       reference=["backends/igvm.c: qigvm_file_init"])
            for i in range(12) for p in ("native", "sev")]
    rows += [CellResult(f"page-normal/{p}/cfg", "page-normal", "t", ["PAGE_DATA"], "reset-vector",
                        p, "cfg", None, "native-tcg", V.PASS, "boots", "booted")
             for p in ("native", "sev")]
    meta = {"qemu_version": "10.2.2", "qemu": "/q",
            "absent_syntaxes": [{"syntax": "sev-guest", "cells": 269, "reason": "lacks it"}]}
    full = report.terminal_lines(rows, meta, verbosity=0, width=80)
    text = "\n".join(full)
    assert text.count("known deviation:") == 1  # one reason for 24 cells, wrapped
    assert text.count("XFAIL x24") == 1 and all(len(l) <= 80 for l in full)
    assert "malformed[r0], malformed[r1]" in text and "on native/sev" in text
    assert "IGVM syntax sev-guest: 269 cells not run" in text
    assert sum(l.startswith("malformed[") for l in full) == 12  # the table: one row per case
    quiet = report.terminal_lines(rows, meta, verbosity=-1, width=80)
    assert len(quiet) < len(full) / 3 and not any(l.startswith("malformed[") for l in quiet)
    assert "\n".join(quiet).count("XFAIL x24") == 1
