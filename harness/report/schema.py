"""Validation of results and dashboard documents against their versioned schemas.

The schemas live next to this module as JSON Schema (draft 2020-12) files so
that other tools (a lab's dashboard, a CI step) can validate our output
without importing the harness.  Validation goes through the ``jsonschema``
library; a document that does not conform is reported as one line naming the
file, the JSON path and the rule.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.inputs import read_text_input

SCHEMAS = {
    ("igvm-harness/results", 1): "results-v1.schema.json",
    ("igvm-harness/dashboard", 1): "dashboard-v1.schema.json",
}


@functools.cache
def load_schema(schema_id: str, version: int) -> dict[str, Any]:
    """The JSON Schema for ``schema_id`` at ``version``."""
    try:
        name = SCHEMAS[(schema_id, version)]
    except KeyError:
        known = ", ".join(f"{s} v{v}" for s, v in SCHEMAS)
        raise HarnessError(f"unknown document schema {schema_id!r} version {version!r} "
                           f"(this harness reads: {known})", 1) from None
    text = resources.files("harness.report").joinpath("schema", name).read_text("utf-8")
    return json.loads(text)


def schema_path(schema_id: str, version: int) -> Path:
    name = SCHEMAS[(schema_id, version)]
    return Path(str(resources.files("harness.report").joinpath("schema", name)))


def validate(doc: Any, where: str = "document") -> dict[str, Any]:
    """Check ``doc`` against the schema it names; returns it or raises
    :class:`HarnessError` (exit status 1: an invalid input file)."""
    if not isinstance(doc, dict):
        raise HarnessError(f"{where}: not an igvm-harness report (top level is not an object)", 1)
    schema_id, version = doc.get("schema"), doc.get("schema_version")
    if not isinstance(schema_id, str) or not schema_id.startswith("igvm-harness/"):
        raise HarnessError(f"{where}: not an igvm-harness report (no 'schema' field)", 1)
    try:
        schema = load_schema(schema_id, version)
    except HarnessError as exc:  # a newer harness's file: say which file
        raise HarnessError(f"{where}: {exc}", exc.exit_code) from None
    import jsonschema  # ~80 ms: only when a document is validated, not at CLI start-up

    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is not None:
        path = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise HarnessError(f"{where}: does not match {schema_id} v{version} at {path}: "
                           f"{error.message}", 1)
    return doc


def load(path: str | Path) -> dict[str, Any]:
    """Read and validate a results or dashboard JSON file."""
    path = Path(path)
    text = read_text_input(path, "JSON")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{path}: not JSON: {exc.msg} at line {exc.lineno}", 1) from None
    return validate(doc, str(path))
