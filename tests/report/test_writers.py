"""JSON, JUnit XML and HTML output of one report."""

from __future__ import annotations

import html.parser
import json
import os
import xml.etree.ElementTree as ET

import pytest

from harness.errors import HarnessError
from harness.report import writers


def test_write_all_writes_three_consistent_files(rich_report, tmp_path):
    paths = writers.write_all(rich_report, tmp_path / "out")
    assert sorted(p.suffix for p in paths.values()) == [".html", ".json", ".xml"]
    doc = json.loads(paths["json"].read_text())
    assert doc["summary"]["verdict"] == "fail"
    assert [c["id"] for c in doc["checks"]] == [c.id for c in rich_report.checks]
    # Readable like any file the user creates (mkstemp alone would give 0600).
    mask = os.umask(0o022)
    os.umask(mask)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~mask for p in paths.values())
    # No temporary files are left next to the results.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        p.name for p in paths.values())


def test_junit_follows_the_junit_xml_conventions(rich_report, tmp_path):
    # JUnit semantics (as read by Jenkins/GitLab): <failure> counts as failed,
    # <skipped> as skipped, no child as passed; suite attributes carry totals.
    root = ET.fromstring(writers.to_junit(rich_report))
    suite = root.find("testsuite")
    assert suite.get("tests") == "5" and suite.get("failures") == "1"
    assert suite.get("skipped") == "2" and suite.get("errors") == "0"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["qemu.lint"].find("failure") is not None
    assert list(cases["spec.validate"]) == []
    boundary = cases["sev-es.boot"].find("skipped")
    assert boundary.get("message").startswith("reached hardware boundary:")
    assert "<script>alert(1)</script>" in cases["sev-es.boot"].find("system-out").text
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["qemu_version"] == "10.2.2" and props["sev_api_version"] == "1.55"
    assert props["image_sha256"] == "0" * 63 + "1"


class _Refs(html.parser.HTMLParser):
    """Collects every attribute that would make a browser load something."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "data", "srcset", "poster", "action"):
                self.refs.append(f"{tag} {name}={value}")


def test_html_is_self_contained_and_escapes_evidence(rich_report):
    page = writers.html.render_report(rich_report)
    refs = _Refs()
    refs.feed(page)
    assert refs.refs == []
    assert "link" not in refs.tags and "script" not in refs.tags
    assert "url(" not in page and "@import" not in page
    # Hostile evidence text is shown, not executed.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for needle in ("sha256", "ab" * 32, "1.55", "10.2.2", "0" * 63 + "1", "VP_CONTEXT"):
        assert needle in page


def test_write_all_refuses_a_file_as_directory(rich_report, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(HarnessError, match="not a directory"):
        writers.write_all(rich_report, target)


def test_matrix_position_with_several_cells_is_coloured_by_the_worst(rich_report):
    from harness.report.html import matrix_view
    from harness.report.model import MatrixCell

    rich_report.matrix += [MatrixCell("PAGE_DATA", "sev-es", v) for v in ("skip", "boundary")]
    pos = matrix_view(rich_report)["grid"][("PAGE_DATA", "sev-es")]
    # A boundary is never shown as a pass, whatever passed beside it.
    assert pos["worst"] == "boundary"
    assert pos["counts"] == [("boundary", 1), ("pass", 1), ("skip", 1)]
    page = writers.html.render_report(rich_report)
    assert '<td class="cell-boundary">' in page and "3 cells" in page


def test_two_reports_in_the_same_second_do_not_overwrite(rich_report, tmp_path):
    first = writers.write_all(rich_report, tmp_path)
    second = writers.write_all(rich_report, tmp_path)
    assert second["json"].name == first["json"].name.replace(".json", "-2.json")
    assert len(list(tmp_path.glob("*.json"))) == 2
