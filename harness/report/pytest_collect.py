"""pytest plugin part: collect a pytest session's results into the report model.

Register it with ``-p harness.report.pytest_collect`` or through the
``pytest11`` entry points (it is a separate plugin from ``harness.plugin`` so
that the option set stays with the plugin that owns it).  At the end of the
session it writes JSON, JUnit XML and HTML (``--igvm-report-dir DIR``; with
``--igvm`` and no directory, ``reports/``).

A test adds to its entry with ``record_property``:

* ``igvm_check``: a dict with any of ``verdict`` (e.g. ``"boundary"``, which
  pytest can only show as a skip), ``id``, ``name``, ``group``, ``platform``,
  ``directive``, ``message`` and ``evidence`` (``logs``, ``console``,
  ``measurements``, ``command``, ``details`` as in the results schema);
* ``igvm_cells``: a list of directive x platform matrix cells (dicts).

Safe under pytest-xdist: workers send their reports (with user properties)
to the controller, which alone writes the files.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from harness.report import fingerprint, writers
from harness.report.model import (VERDICTS, Check, Evidence, Log, MatrixCell, Measurement,
                                  Report, utc_now)

class _Collector:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.started = utc_now()
        self.t0 = time.monotonic()
        self.checks: dict[str, Check] = {}
        self.cells: list[MatrixCell] = []
        self.written: tuple[Report, dict[str, Path]] | None = None
        self.run_dirs: dict[str, set[str]] = {}

    # -- one test's reports (setup, call, teardown) ------------------------
    def _runs(self, check: Check, rep: pytest.TestReport) -> None:
        seen = self.run_dirs.setdefault(rep.nodeid, set())
        for key, value in rep.user_properties:
            if key == "qemu_run" and value not in seen:
                seen.add(value)
                _add_run_logs(check.evidence, Path(value))

    def add(self, rep: pytest.TestReport) -> None:
        verdict = _verdict(rep)
        if verdict is None:
            if rep.when == "teardown" and rep.nodeid in self.checks:
                self._runs(self.checks[rep.nodeid], rep)
            return
        existing = self.checks.get(rep.nodeid)
        if existing is not None:  # teardown after the call: only an error counts
            existing.duration_s = round(existing.duration_s + max(rep.duration, 0.0), 3)
            if verdict == "error" and existing.verdict not in ("fail", "error"):
                existing.verdict, existing.message = "error", _message(rep, verdict)
                existing.evidence.logs.append(Log("teardown failure", rep.longreprtext))
            self._runs(existing, rep)  # run directories recorded while the call was reported
            return
        props = dict(rep.user_properties)
        extra = props.get("igvm_check") or {}
        if extra.get("verdict") in VERDICTS and verdict in ("pass", "skip"):
            verdict = extra["verdict"]
        message = extra.get("message") or _message(rep, verdict)
        evidence = _evidence(extra.get("evidence") or {})
        if rep.failed and rep.longreprtext:
            evidence.logs.append(Log(f"{rep.when} failure", rep.longreprtext))
        for name, text in rep.sections:
            if text.strip() and not name.startswith("igvm-harness QEMU run"):
                evidence.logs.append(Log(name, text))
        module = rep.nodeid.split("::", 1)[0]
        check = Check(
            id=extra.get("id") or rep.nodeid,
            name=extra.get("name") or rep.nodeid.split("::", 1)[-1],
            verdict=verdict, message=message,
            group=extra.get("group") or Path(module).stem,
            platform=extra.get("platform"), directive=extra.get("directive"),
            duration_s=round(max(rep.duration, 0.0), 3),
            evidence=evidence,
        )
        self.checks[rep.nodeid] = check
        self._runs(check, rep)  # runner log directories (harness.plugin records them)
        for cell in props.get("igvm_cells") or []:
            self.cells.append(MatrixCell(**{k: cell[k] for k in cell
                                            if k in MatrixCell.__dataclass_fields__}))

    # -- hooks (the collector is registered as a plugin of its own) -------
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.add(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        outdir = _output_dir(self.config)
        if outdir is None or not self.checks:
            return
        self.written = (rep := self.report(), writers.write_all(rep, outdir))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.written is None:
            return
        report, paths = self.written
        summary = report.summary()
        counts = ", ".join(f"{summary[v]} {v}" for v in VERDICTS if summary.get(v))
        terminalreporter.write_sep("-", "igvm-harness report")
        terminalreporter.write_line(f"{report.title}: {summary['verdict'].upper()} ({counts})")
        terminalreporter.write_line(f"html: {paths['html']}")
        terminalreporter.write_line(f"json: {paths['json']}  junit: {paths['junit']}")

    def report(self) -> Report:
        igvm = _opt(self.config, "igvm")
        platform = _opt(self.config, "platform") or "auto"
        qemu = _opt(self.config, "qemu")
        accel = _opt(self.config, "accel")
        label = _opt(self.config, "igvm_report_label")
        image = Path(igvm) if igvm and Path(igvm).is_file() else None
        title = (f"Certification of {image.name}" if image else "igvm-harness suite") + \
            f" ({platform})"
        report = Report(
            kind="certification" if image else "suite",
            title=label or title,
            environment=fingerprint.fingerprint(_qemu_path(qemu), accel=accel, image=image),
            subject={"name": image.name if image else "suite", "platform": platform},
            run={"started": self.started, "finished": utc_now(),
                 "duration_s": round(time.monotonic() - self.t0, 3),
                 "command": ["pytest", *self.config.invocation_params.args]},
        )
        report.checks = list(self.checks.values())
        report.matrix = self.cells
        return report


def _opt(config: pytest.Config, name: str) -> Any:
    try:
        return config.getoption(name)
    except ValueError:
        return None


def _qemu_path(explicit: str | None) -> str | None:
    from harness.qemu import discover

    found, _notes = discover.find(explicit)
    return found.path if found else None


def _verdict(rep: pytest.TestReport) -> str | None:
    if hasattr(rep, "wasxfail"):
        return "xfail" if rep.skipped else "xpass" if rep.passed else "fail"
    if rep.when == "call":
        return "pass" if rep.passed else "fail" if rep.failed else "skip"
    if rep.failed:
        return "error"
    return "skip" if rep.skipped else None  # a passing setup/teardown adds nothing


def _message(rep: pytest.TestReport, verdict: str) -> str:
    if rep.skipped and isinstance(rep.longrepr, tuple):
        return str(rep.longrepr[2]).removeprefix("Skipped: ")
    if hasattr(rep, "wasxfail"):
        return str(rep.wasxfail)
    if rep.failed:
        crash = getattr(rep.longrepr, "reprcrash", None)
        if getattr(crash, "message", ""):
            return crash.message
        lines = rep.longreprtext.splitlines()
        return lines[-1] if lines else verdict
    return ""


#: Files of a runner log directory (harness.qemu.runner) shown as evidence.
RUN_FILES = (("cmdline.txt", "QEMU command line"), ("stderr.log", "QEMU stderr"),
             ("qmp.log", "QMP transcript"), ("outcome.json", "outcome"))
EVIDENCE_LIMIT = 16 * 1024


def _tail(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    cut = len(data) - EVIDENCE_LIMIT
    text = data[-EVIDENCE_LIMIT:].decode("utf-8", "replace")
    return f"[... {cut} bytes cut ...]\n{text}" if cut > 0 else text


def _add_run_logs(evidence: Evidence, run_dir: Path) -> None:
    """Console and logs of one QEMU run, every verdict (not only failures)."""
    console = _tail(run_dir / "console.log")
    if console and not evidence.console:
        evidence.console = console
    for name, title in RUN_FILES:
        text = _tail(run_dir / name)
        if text and text.strip():
            evidence.logs.append(Log(f"{title} ({run_dir.name})", text))


def _evidence(raw: dict[str, Any]) -> Evidence:
    return Evidence(
        logs=[Log(**log) for log in raw.get("logs", [])],
        console=raw.get("console"),
        measurements=[Measurement(**m) for m in raw.get("measurements", [])],
        command=raw.get("command"),
        details=raw.get("details", {}),
    )


# ----------------------------------------------------------------- hooks
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("igvm-harness reports")
    group.addoption("--igvm-report-dir", metavar="DIR", default=None,
                    help="write JSON, JUnit XML and HTML results here (default with "
                         "--igvm: reports/)")
    group.addoption("--igvm-report-label", metavar="TEXT", default=None,
                    help="title of the report (default: from --igvm / --platform)")


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # xdist worker: the controller writes
        return
    if config.pluginmanager.get_plugin(COLLECTOR_NAME) is None:
        config.pluginmanager.register(_Collector(config), COLLECTOR_NAME)


COLLECTOR_NAME = "igvm-harness-report-collector"


def _output_dir(config: pytest.Config) -> Path | None:
    out = _opt(config, "igvm_report_dir")
    if out:
        return Path(out)
    return Path("reports") if _opt(config, "igvm") else None


