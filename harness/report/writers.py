"""Write a :class:`Report` as JSON, JUnit XML and HTML into a directory.

JSON is the source of truth (validated against its schema before it is
written); JUnit XML goes through ``junitparser`` for CI systems; HTML through
Jinja2 (see :mod:`harness.report.html`).  Files are written to a temporary name
and renamed, so an interrupted run never leaves a half-written report.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.outputs import write_atomic
from harness.report import html, schema, text
from harness.report.model import Report


def _atomic_write(path: Path, data: str) -> None:
    """One report file, whole or not at all, readable by others (reports are
    for sharing: open()'s permissions, not a temporary file's 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, prefix=f".{path.name}.")


def write_files(outdir: Path, paths: dict[str, Path], texts: dict[str, str], what: str) -> None:
    """Write each already-rendered ``texts[key]`` to ``paths[key]`` atomically;
    an OS error becomes one line naming ``outdir`` and ``what`` was written."""
    try:
        for key, path in paths.items():
            _atomic_write(path, texts[key])
    except OSError as exc:
        raise HarnessError(f"{outdir}: cannot write {what}: {exc.strerror or exc}") from None


def report_stem(report: Report) -> str:
    """A file-name stem: kind, subject and start time, e.g.
    ``certify-vendor-20261126T110000Z``."""
    subject = report.subject.get("name") or report.title
    subject = re.sub(r"[^A-Za-z0-9._-]+", "_", str(subject)).strip("_")[:60] or "run"
    stamp = re.sub(r"[^0-9T]", "", report.run.get("started", ""))[:15]
    prefix = {"certification": "certify", "suite": "suite", "matrix-cell": "cell"}[report.kind]
    parts = [prefix] + ([subject] if subject != prefix else [])
    if report.subject.get("platform") and report.kind != "certification":
        parts.append(str(report.subject["platform"]))
    return "-".join(parts + ([f"{stamp}Z"] if stamp else []))


def to_json(report: Report) -> str:
    doc = schema.validate(text.safe(report.to_dict()), "report")
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


def to_junit(report: Report) -> str:
    """JUnit XML: one testsuite per report, one testcase per check.

    Verdicts map so that CI dashboards never count a non-pass as a pass:
    ``boundary`` and ``xfail`` become skipped with their reason, ``xpass``
    a failure (as pytest does under ``xfail_strict``), ``predicted`` skipped
    (nothing confirmed it).  Console text is made safe for XML first
    (:mod:`harness.report.text`)."""
    report = text.safe_report(report)
    # junitparser (and importlib.metadata under it) only when JUnit is written
    from junitparser import Error, Failure, JUnitXml, Skipped, TestCase, TestSuite
    suite = TestSuite(report.title)
    env = report.environment
    props = {
        "harness_version": env.get("harness_version"),
        "hostname": env.get("host", {}).get("hostname"),
        "kernel": env.get("host", {}).get("kernel"),
        "qemu_version": env.get("qemu", {}).get("version"),
        "qemu_path": env.get("qemu", {}).get("path"),
        "libigvm": env.get("qemu", {}).get("libigvm_name"),
        "accel": env.get("accel"),
        "sev_api_version": env.get("sev", {}).get("api_version"),
        "image_sha256": (env.get("image") or {}).get("sha256"),
        "verdict": report.verdict(),
    }
    for key, value in props.items():
        if value is not None:
            suite.add_property(key, str(value))
    for check in report.checks:
        classname = f"igvm.{report.kind}.{check.group or 'checks'}"
        case = TestCase(check.id, classname, round(check.duration_s, 3))
        message = check.message or check.verdict
        if check.verdict == "fail":
            case.result = [Failure(message, "fail")]
        elif check.verdict == "xpass":
            case.result = [Failure(f"unexpectedly passed: {message}", "xpass")]
        elif check.verdict == "error":
            case.result = [Error(message, "error")]
        elif check.verdict == "skip":
            case.result = [Skipped(message, "skip")]
        elif check.verdict == "boundary":
            case.result = [Skipped(f"reached hardware boundary: {message}", "boundary")]
        elif check.verdict == "xfail":
            case.result = [Skipped(f"expected failure: {message}", "xfail")]
        elif check.verdict == "predicted":
            case.result = [Skipped(f"predicted, not verified: {message}", "predicted")]
        out = _evidence_text(check)
        if out:
            case.system_out = out
        suite.add_testcase(case)
    suite.update_statistics()
    xml = JUnitXml()
    xml.add_testsuite(suite)
    buffer = io.BytesIO()
    xml.write(buffer, pretty=True)
    return buffer.getvalue().decode("utf-8")


def _evidence_text(check: Any) -> str:
    ev = check.evidence
    parts = []
    if ev.command:
        parts.append("command: " + " ".join(ev.command))
    for m in ev.measurements:
        parts.append(f"measurement {m.platform} {m.algorithm}: {m.digest}"
                     + (f" (observed {m.observed})" if m.observed else ""))
    if ev.console:
        parts.append("--- console ---\n" + ev.console)
    for log in ev.logs:
        parts.append(f"--- {log.name} ---\n{log.text}")
    return "\n".join(parts)


def _free_paths(outdir: Path, stem: str) -> dict[str, Path]:
    """Paths for ``stem`` that do not overwrite an earlier report (two runs
    started within the same second get ``-2``, ``-3``, ...)."""
    for n in range(1, 1000):
        name = stem if n == 1 else f"{stem}-{n}"
        paths = {"json": outdir / f"{name}.json", "junit": outdir / f"{name}.xml",
                 "html": outdir / f"{name}.html"}
        if not any(p.exists() for p in paths.values()):
            return paths
    raise HarnessError(f"{outdir}: too many reports named {stem}*")


def write_all(report: Report, outdir: str | Path, stem: str | None = None) -> dict[str, Path]:
    """Write ``STEM.json``, ``STEM.xml`` and ``STEM.html`` into ``outdir``;
    returns their paths by format."""
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise HarnessError(f"{outdir}: not a directory")
    paths = _free_paths(outdir, stem or report_stem(report))
    # Render everything first: a rendering error leaves no partial set behind.
    texts = {"json": to_json(report), "junit": to_junit(report),
             "html": html.render_report(report)}
    write_files(outdir, paths, texts, "report")
    return paths
