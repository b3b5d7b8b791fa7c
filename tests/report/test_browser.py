"""The HTML report and dashboard render in a real browser (Debian's Chromium).

The assertions are on what Chromium built from the page (its DOM after
parsing, and a screenshot of the requested size), not on our template text.
"""

from __future__ import annotations

import struct

import pytest

from harness.report import merge, writers

from . import browser
from .conftest import make_report

pytestmark = pytest.mark.skipif(browser.chromium() is None, reason="no chromium")


def test_report_page_renders_in_chromium(rich_report, tmp_path):
    page = writers.write_all(rich_report, tmp_path)["html"]
    dom = browser.dump_dom(page)
    assert "<title>Certification of vendor.igvm</title>" in dom
    checks = browser.table(dom, "checks")
    assert checks[0][:3] == ["check", "platform", "verdict"]
    assert [row[2] for row in checks[1:]] == ["pass", "fail", "pass", "boundary", "skip"]
    matrix = browser.table(dom, "matrix")
    assert matrix[0] == ["directive", "sev", "sev-es"]
    assert matrix[1][0] == "PAGE_DATA" and matrix[2][0] == "VP_CONTEXT"
    env = {row[0]: row[1] for row in browser.table(dom, "environment")}
    assert env["SEV firmware"].startswith("API 1.55 build 21")
    assert "0" * 63 + "1" in env["image"]
    # The console evidence is text in the DOM, not a script element.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom


def test_report_page_screenshot(rich_report, tmp_path):
    page = writers.write_all(rich_report, tmp_path)["html"]
    png = browser.screenshot(page, tmp_path / "report.png", (1200, 1400))
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # IHDR, PNG spec section 11.2.2
    assert (width, height) == (1200, 1400)
    assert len(data) > 20_000  # a blank page compresses to a few hundred bytes


def test_dashboard_of_two_hosts_renders_in_chromium(tmp_path):
    a = writers.write_all(make_report({"spec.validate": "pass", "sev-es.boot": "fail"},
                                      hostname="lab-a"), tmp_path, "a")["json"]
    b = writers.write_all(make_report({"spec.validate": "pass", "sev-es.boot": "boundary"},
                                      hostname="lab-b", qemu="10.1.0"), tmp_path, "b")["json"]
    page = merge.write_dashboard(merge.merge_files([a, b]), tmp_path / "dash")["html"]
    dom = browser.dump_dom(page)
    grid = browser.table(dom, "grid")
    # header: case + one configuration per host, then each one's platform columns
    assert len(grid) == 2 + 2 and len(grid[0]) == 3 and grid[1] == ["sev-es", "sev-es"]
    assert "lab-a" in grid[0][1] and "10.1.0" in grid[0][2]
    boot = [row for row in grid if row[0].startswith("boot")][0]
    assert boot[1].startswith("fail") and boot[2].startswith("boundary")


def test_dashboard_of_a_matrix_reads_like_the_terminal_matrix(tmp_path):
    """Two accelerators x two platform choices: rows are cases, columns the
    platforms within each configuration (a colspan per configuration, as
    Chromium lays it out), an unselected platform has no column."""
    from harness.report.model import Check

    paths = []
    for i, (accel, platform) in enumerate([("tcg", "native"), ("tcg", "sev"),
                                           ("kvm", "native"), ("kvm", "sev")]):
        r = make_report({}, started=f"2026-11-2{i}T02:00:00+00:00")
        r.kind, r.subject = "suite", {"name": "suite", "platform": platform}
        r.environment["accel"] = accel
        verdict = "pass" if platform == "native" else "boundary"
        for case in ("page-normal", "vp-context"):
            r.checks.append(Check(f"{case}/{platform}/cfg", case, verdict, platform=platform))
        paths.append(writers.write_all(r, tmp_path, f"r{i}")["json"])
    page = merge.write_dashboard(merge.merge_files(paths), tmp_path / "dash")["html"]
    dom = browser.dump_dom(page)
    grid = browser.table(dom, "grid")
    assert grid[1] == ["native", "sev", "native", "sev"]
    assert [row[0].split()[0] for row in grid[2:]] == ["page-normal/cfg", "vp-context/cfg"]
    for row in grid[2:]:
        assert [c.split()[0] for c in row[1:]] == ["pass", "boundary", "pass", "boundary"]
    assert dom.count('colspan="2"') == 2
    configs = browser.table(dom, "configurations")
    assert len(configs) == 3 and {row[4] for row in configs[1:]} == {"native, sev"}


def test_certify_command_output_renders_in_chromium(tmp_path, capsys):
    """The whole path: a vendor image, one command, the HTML page in a browser."""
    import hashlib

    from harness.cli import main
    from harness.igvm.defs import PlatformType

    from . import images

    image = images.with_secrets_page(tmp_path / "vendor.igvm", PlatformType.SEV_ES)
    assert main(["certify", str(image), "--no-boot", "--output", str(tmp_path / "rep")]) == 1
    capsys.readouterr()
    [page] = (tmp_path / "rep").glob("certify-vendor.igvm-*.html")
    dom = browser.dump_dom(page)
    rows = {row[0].split()[0]: row for row in browser.table(dom, "checks")[1:]}
    assert rows["spec.validate"][2] == "pass"
    # "Other page types result in an error." (docs/system/igvm.rst)
    assert rows["sev-es.directives"][2] == "fail"
    assert "PAGE_DATA(SECRETS)" in rows["sev-es.directives"][3]
    env = {row[0]: row[1] for row in browser.table(dom, "environment")}
    assert hashlib.sha256(image.read_bytes()).hexdigest() in env["image"]
    matrix = browser.table(dom, "matrix")
    assert matrix[0] == ["directive", "sev-es"]
    assert [r[0] for r in matrix[1:]] == ["PAGE_DATA", "PAGE_DATA(SECRETS)"]
