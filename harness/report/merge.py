"""Merge many hosts' results into one dashboard with per-cell history.

It reads like the terminal matrix: rows are cases (``subject::case``),
columns are platforms within each configuration (host x QEMU build x
accelerator), and each cell keeps the verdicts of every run that reached it,
oldest first.  A check's case is its id without the platform (matrix cell
``page-normal/sev/cfg`` -> ``page-normal/cfg``; certification check
``sev-es.boot`` -> ``boot``) and without the configuration's accelerator
among its pytest parameters (``test_x[q35-tcg]`` -> ``test_x[q35]``), so the
runs of one matrix meet in one row.  A check without a platform sits in the
column of the platform its run asked for.  Only cells a run reached exist:
tests the run deselected (``--platform``) leave no cell.

A previous dashboard can be given as an input too: its history is carried
over, so a nightly job only needs the last dashboard plus the new results (an
artifact of the CI engine), never a database.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.report import html, schema, text
from harness.report.writers import write_files
from harness.report.model import FAILING, VERDICTS, utc_now

DASHBOARD_ID = "igvm-harness/dashboard"
DASHBOARD_VERSION = 1
DEFAULT_HISTORY = 30


PLATFORM_ORDER = ("native", "sev", "sev-es", "sev-snp", "tdx", "vsm", "-")


def configuration_of(doc: dict[str, Any]) -> str:
    """The configuration a results document was obtained on: host x QEMU build x accelerator."""
    env = doc["environment"]
    qemu = env["qemu"].get("version") or "unknown"
    qpath = env["qemu"].get("path")
    # Two builds of one QEMU version on a host (a matrix over QEMU builds)
    # are different configurations: the binary's path tells them apart.
    where = f" @{qpath}" if qpath else ""
    return f"{env['host']['hostname']} | QEMU {qemu}{where} | {env.get('accel') or '-'}"


def requested_platform(doc: dict[str, Any]) -> str:
    platform = (doc.get("subject") or {}).get("platform") or "-"
    return "-" if platform == "auto" else platform


def column_of(doc: dict[str, Any], platform: str) -> dict[str, Any]:
    """The column of *platform* within the document's configuration."""
    env = doc["environment"]
    config = configuration_of(doc)
    return {
        "id": f"{config} | {platform}",
        "configuration": config,
        "hostname": env["host"]["hostname"],
        "qemu_version": env["qemu"].get("version") or "unknown",
        "qemu_path": env["qemu"].get("path"),
        "libigvm": env["qemu"].get("libigvm_name") or "unknown",
        "accel": env.get("accel") or "-",
        "platform": platform,
        "kernel": env["host"].get("kernel"),
        "harness_version": env.get("harness_version"),
        "sev_api_version": (env.get("sev") or {}).get("api_version"),
        "latest_run": doc["run"]["started"],
    }


def _subject_name(doc: dict[str, Any]) -> str:
    return str((doc.get("subject") or {}).get("name") or doc["title"])


def case_of(check_id: str, platform: str | None, accel: str | None) -> str:
    """The row a check belongs to: its id without the platform segment
    (``/``- or ``.``-separated) and without the accelerator among its pytest
    parameters (``[...]``, ``-``-separated), both of which are columns."""
    where, sep, case = check_id.rpartition("::")  # never a pytest node id's file path
    if platform and platform != "-":
        dropped = re.sub(rf"(^|[/.]){re.escape(platform)}(?=[/.]|$)", "", case, count=1)
        case = dropped.lstrip("/.") or case
    if accel and accel not in ("-", "auto"):
        def drop(m: re.Match) -> str:
            params = [p for p in m.group(1).split("-") if p != accel]
            return f"[{'-'.join(params)}]" if params else ""
        case = re.sub(r"\[([^\[\]]*)\]$", drop, case)
    return where + sep + case


def _platform_key(platform: str) -> tuple[int, str]:
    order = PLATFORM_ORDER.index(platform) if platform in PLATFORM_ORDER else len(PLATFORM_ORDER)
    return (order, platform)


#: A run that reaches one (case, platform) twice keeps the most severe verdict.
SEVERITY = ("error", "fail", "xpass", "boundary", "xfail", "pass", "skip")


def _rank(verdict: str) -> int:
    return SEVERITY.index(verdict) if verdict in SEVERITY else len(SEVERITY)


class Dashboard:
    """Accumulates results documents and earlier dashboards."""

    def __init__(self, history_limit: int = DEFAULT_HISTORY) -> None:
        if history_limit < 1:
            raise HarnessError("--history must be at least 1")
        self.history_limit = history_limit
        self.columns: dict[str, dict[str, Any]] = {}
        self.rows: dict[str, dict[str, Any]] = {}
        self.history: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self.runs: dict[tuple[str, str], dict[str, Any]] = {}

    # -- inputs -----------------------------------------------------------
    def add(self, doc: dict[str, Any], source: str) -> None:
        if doc["schema"] == DASHBOARD_ID:
            self._add_dashboard(doc)
        else:
            self._add_results(doc, source)

    def _add_column(self, col: dict[str, Any]) -> None:
        old = self.columns.get(col["id"])
        if old is None or col["latest_run"] >= old["latest_run"]:
            self.columns[col["id"]] = col

    def _add_results(self, doc: dict[str, Any], source: str) -> None:
        started = doc["run"]["started"]
        subject = _subject_name(doc)
        config = configuration_of(doc)
        accel = doc["environment"].get("accel")
        # One run per results document: CI cells of one configuration (the
        # platforms of a host's accelerator) start within the same second.
        requested = requested_platform(doc)
        self.runs[(config, requested, started, doc["title"])] = {
            "source": source, "started": started, "column": config, "platform": requested,
            "kind": doc["kind"], "title": doc["title"], "verdict": doc["summary"]["verdict"],
            "image_sha256": (doc["environment"].get("image") or {}).get("sha256"),
        }
        for check in doc["checks"]:
            platform = check.get("platform") or requested_platform(doc)
            col = column_of(doc, platform)
            self._add_column(col)
            case = case_of(check["id"], check.get("platform"), accel)
            row_id = f"{subject}::{case}"
            self.rows.setdefault(row_id, {
                "id": row_id, "subject": subject, "check": case,
                "name": check["name"],
                "platform": None, "directive": check.get("directive"),
            })
            entries = self.history.setdefault((row_id, col["id"]), {})
            entry = {"started": started, "verdict": check["verdict"],
                     "message": check.get("message", ""), "source": source, "check": check["id"]}
            old = entries.get(started)
            if old is None or _rank(entry["verdict"]) < _rank(old["verdict"]):
                entries[started] = entry

    def _add_dashboard(self, doc: dict[str, Any]) -> None:
        for col in doc["columns"]:
            col.setdefault("configuration", col["id"].rsplit(" | ", 1)[0])
            self._add_column(col)
        for row in doc["rows"]:
            self.rows.setdefault(row["id"], row)
        for run in doc["runs"]:
            key = (run["column"], run.get("platform", "-"), run["started"], run.get("title"))
            self.runs.setdefault(key, run)
        for cell in doc["cells"]:
            entries = self.history.setdefault((cell["row"], cell["column"]), {})
            for entry in cell["history"]:
                entries.setdefault(entry["started"], entry)

    # -- output -----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        cells = []
        latest_counts = {v: 0 for v in VERDICTS}
        for (row, column), entries in sorted(self.history.items()):
            history = [entries[k] for k in sorted(entries)][-self.history_limit:]
            latest = history[-1]["verdict"]
            latest_counts[latest] += 1
            changed = len(history) > 1 and history[-2]["verdict"] != latest
            cells.append({"row": row, "column": column, "latest": latest,
                          "changed": changed, "history": history})
        columns = sorted(self.columns.values(),
                         key=lambda c: (c["configuration"], _platform_key(c["platform"])))
        rows = sorted(self.rows.values(), key=lambda r: (r["subject"], r["check"]))
        runs = sorted(self.runs.values(), key=lambda r: (r["started"], r["column"]))
        verdict = ("fail" if any(latest_counts[v] for v in FAILING)
                   else "pass" if cells and latest_counts["pass"] + latest_counts["xfail"] == len(cells)
                   else "partial" if cells else "empty")
        return {
            "schema": DASHBOARD_ID,
            "schema_version": DASHBOARD_VERSION,
            "generated": utc_now(),
            "history_limit": self.history_limit,
            "summary": {"cells": len(cells), **latest_counts, "verdict": verdict},
            "columns": columns,
            "rows": rows,
            "cells": cells,
            "runs": runs,
        }


def source_name(path: Path) -> str:
    """How a run names its file: with its directory, which is the CI cell's
    (``native-native-kvm/suite-native-...json``): two cells of one nightly
    write files of the same name."""
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def merge_files(paths: list[str | Path], history_limit: int = DEFAULT_HISTORY) -> dict[str, Any]:
    """Load, validate and merge results/dashboard files into a dashboard document."""
    if not paths:
        raise HarnessError("report merge: give at least one results JSON file")
    dash = Dashboard(history_limit)
    for path in paths:
        dash.add(schema.load(path), source_name(Path(path)))
    return schema.validate(dash.to_dict(), "merged dashboard")


def write_dashboard(dashboard: dict[str, Any], outdir: str | Path) -> dict[str, Path]:
    """Write ``dashboard.json`` and ``dashboard.html`` into ``outdir``."""
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise HarnessError(f"{outdir}: not a directory")
    texts = {"json": json.dumps(text.safe(dashboard), indent=2) + "\n",
             "html": html.render_dashboard(dashboard)}
    paths = {"json": outdir / "dashboard.json", "html": outdir / "dashboard.html"}
    write_files(outdir, paths, texts, "dashboard")
    return paths
