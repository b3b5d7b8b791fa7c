"""The results model, its JSON form and the versioned JSON Schema."""

from __future__ import annotations

import json

import pytest

from harness.errors import HarnessError
from harness.report import schema
from harness.report.model import Check, Report

from .conftest import make_report


def test_summary_counts_and_overall_verdict():
    # One failing check makes the whole run fail; skips alone make it partial.
    assert make_report({"a": "pass", "b": "fail", "c": "skip"}).verdict() == "fail"
    assert make_report({"a": "pass", "b": "boundary"}).verdict() == "partial"
    assert make_report({"a": "pass", "b": "xfail"}).verdict() == "pass"
    assert make_report({"a": "pass", "b": "xpass"}).verdict() == "fail"
    summary = make_report({"a": "pass", "b": "pass", "c": "error"}).summary()
    assert (summary["total"], summary["pass"], summary["error"]) == (3, 2, 1)


def test_unknown_verdict_is_refused():
    with pytest.raises(ValueError, match="unknown verdict"):
        Check("x", "x", "passed")


def test_json_round_trip_and_schema(rich_report, tmp_path):
    doc = schema.validate(rich_report.to_dict())
    assert doc["schema"] == "igvm-harness/results" and doc["schema_version"] == 1
    again = Report.from_dict(json.loads(json.dumps(doc)))
    assert again.to_dict() == doc


@pytest.mark.parametrize("breakage, where", [
    (lambda d: d.update(schema_version=2), "unknown document schema"),
    (lambda d: d["checks"][0].update(verdict="passed"), "checks/0/verdict"),
    (lambda d: d["environment"]["image"].update(sha256="xyz"), "environment/image/sha256"),
    (lambda d: d["environment"].pop("qemu"), "'qemu' is a required property"),
    (lambda d: d["run"].update(started="yesterday"), "run/started"),
])
def test_schema_rejects_broken_documents(rich_report, breakage, where):
    doc = rich_report.to_dict()
    breakage(doc)
    with pytest.raises(HarnessError, match=where) as info:
        schema.validate(doc, "broken.json")
    assert info.value.exit_code == 1
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("broken.json: ")  # every refusal names the file


def test_load_reports_unreadable_and_non_json_files(tmp_path):
    with pytest.raises(HarnessError, match="no such file"):
        schema.load(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(HarnessError, match="not JSON"):
        schema.load(bad)
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    with pytest.raises(HarnessError, match="not an igvm-harness report"):
        schema.load(other)


def test_schema_files_are_valid_json_schema():
    import jsonschema

    for schema_id, version in schema.SCHEMAS:
        jsonschema.Draft202012Validator.check_schema(schema.load_schema(schema_id, version))
