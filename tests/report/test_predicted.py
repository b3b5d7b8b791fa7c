"""The 'predicted' verdict: a value computed but confirmed by nothing on the
host (a launch digest without SEV firmware).  Never a pass, never a failure;
every writer and the dashboard carry it, and documents written before it
existed stay valid (the schema addition is compatible)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from harness.report import html, merge, schema, writers

from .conftest import make_report


def test_predicted_leaves_the_run_partial_and_is_counted():
    report = make_report({"spec.validate": "pass", "sev-es.measurement": "predicted"})
    assert report.verdict() == "partial"
    assert report.summary()["predicted"] == 1 and report.summary()["pass"] == 1


def test_junit_shows_predicted_as_skipped_not_passed():
    report = make_report({"sev-es.measurement": "predicted"})
    root = ET.fromstring(writers.to_junit(report))
    [case] = root.iter("testcase")
    [skipped] = list(case)[:1]
    assert skipped.tag == "skipped" and skipped.get("type") == "predicted"
    assert skipped.get("message").startswith("predicted, not verified: ")


def test_html_and_json_carry_it():
    report = make_report({"sev-es.measurement": "predicted"})
    assert 'class="v v-predicted"' in html.render_report(report)
    doc = schema.validate(json.loads(writers.to_json(report)))
    assert doc["checks"][0]["verdict"] == "predicted" and doc["summary"]["predicted"] == 1


def test_documents_without_the_predicted_count_still_validate():
    doc = json.loads(writers.to_json(make_report({"a": "pass"})))
    del doc["summary"]["predicted"]  # as written before the verdict existed
    schema.validate(doc, "old.json")


def test_dashboard_merges_predicted_cells(tmp_path):
    old = writers.write_all(make_report({"sev-es.measurement": "pass"},
                                        started="2026-11-20T02:00:00+00:00"), tmp_path, "a")
    new = writers.write_all(make_report({"sev-es.measurement": "predicted"},
                                        started="2026-11-21T02:00:00+00:00"), tmp_path, "b")
    dash = merge.merge_files([old["json"], new["json"]])
    [cell] = dash["cells"]
    assert cell["latest"] == "predicted" and cell["changed"] is True
    assert dash["summary"]["predicted"] == 1 and dash["summary"]["verdict"] == "partial"
    paths = merge.write_dashboard(dash, tmp_path / "dash")
    assert "v-predicted" in paths["html"].read_text()
    schema.load(paths["json"])


def test_a_dashboard_from_before_the_verdict_still_renders(tmp_path):
    src = writers.write_all(make_report({"a": "pass"}), tmp_path, "r")["json"]
    dash = merge.merge_files([src])
    del dash["summary"]["predicted"]  # as an older harness wrote it
    old = tmp_path / "old-dashboard.json"
    old.write_text(json.dumps(dash))
    merge.write_dashboard(schema.load(old), tmp_path / "again")
