"""Self-contained HTML pages (one report, one merged dashboard) via Jinja2.

All CSS is inline and no asset is referenced, so a page can be mailed,
attached to a CI run or opened from an artifact store as one file.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from harness.report import text
from harness.report.model import SCHEMA_ID, SCHEMA_VERSION, VERDICTS, Report

if TYPE_CHECKING:
    import jinja2

PLATFORM_ORDER = ("native", "sev", "sev-es", "sev-snp", "tdx", "vsm")


def _env() -> jinja2.Environment:
    import jinja2  # here, not at the top: the CLI imports this module for every command

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.report", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty_json"] = lambda v: json.dumps(v, indent=2, sort_keys=True)
    env.filters["seconds"] = lambda v: f"{float(v or 0):.2f} s"
    return env


def _platform_key(name: str) -> tuple[int, str]:
    try:
        return (PLATFORM_ORDER.index(name), name)
    except ValueError:
        return (len(PLATFORM_ORDER), name)


#: Which verdict colours a matrix position holding several cells.
SEVERITY = ("fail", "error", "xpass", "boundary", "predicted", "xfail", "pass", "skip")


def matrix_view(report: Report) -> dict[str, Any]:
    """Rows (directives, in first-seen order) x columns (platforms); each
    position holds its cells, their verdict counts and the most severe
    verdict (which colours it)."""
    platforms = sorted({c.platform for c in report.matrix}, key=_platform_key)
    directives: list[str] = []
    grid: dict[tuple[str, str], dict[str, Any]] = {}
    for cell in report.matrix:
        if cell.directive not in directives:
            directives.append(cell.directive)
        pos = grid.setdefault((cell.directive, cell.platform), {"cells": [], "counts": {}})
        pos["cells"].append(cell)
        pos["counts"][cell.verdict] = pos["counts"].get(cell.verdict, 0) + 1
    for pos in grid.values():
        pos["worst"] = next(v for v in SEVERITY if v in pos["counts"])
        pos["counts"] = [(v, pos["counts"][v]) for v in SEVERITY if v in pos["counts"]]
    return {"platforms": platforms, "directives": directives, "grid": grid}


def render_report(report: Report) -> str:
    report = text.safe_report(report)
    template = _env().get_template("report.html.j2")
    return template.render(
        report=report,
        summary=report.summary(),
        verdicts=VERDICTS,
        matrix=matrix_view(report),
        env=report.environment,
        schema_id=SCHEMA_ID,
        schema_version=SCHEMA_VERSION,
    )


def render_dashboard(dashboard: dict[str, Any]) -> str:
    dashboard = text.safe(dashboard)
    template = _env().get_template("dashboard.html.j2")
    cells = {(c["row"], c["column"]): c for c in dashboard["cells"]}
    return template.render(dash=dashboard, cells=cells, verdicts=VERDICTS)
