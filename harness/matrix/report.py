"""The matrix report: expected vs observed per cell, with the evidence
(QEMU's error line or the guest's report), as terminal text, JSON and
Markdown.  Counts per platform and verdict come first."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable

from harness.expect.table import PLATFORMS
from harness.expect.verdict import VERDICTS
from harness.report.text import clean, safe

SYMBOL = {"pass": "PASS", "fail": "FAIL", "xfail": "XFAIL", "boundary": "BOUND",
          "suite-error": "ERROR", "skip": "skip"}
SCHEMA = "igvm-harness/matrix/1"


def counts(results: Iterable) -> dict[str, dict[str, int]]:
    """platform -> verdict -> number of cells."""
    out: dict[str, Counter] = defaultdict(Counter)
    for r in results:
        out[r.platform][r.status] += 1
    return {p: {v: out[p].get(v, 0) for v in VERDICTS} for p in PLATFORMS if p in out}


def _grid(results) -> tuple[list[str], dict[str, dict[str, str]]]:
    """rows (case[/rule] and syntax) x platforms -> verdict symbol."""
    rows: dict[str, dict[str, str]] = {}
    order: list[str] = []
    for r in results:
        key = r.case + (f"[{r.rule}]" if r.rule else "") + ("" if r.syntax == "cfg"
                                                            else f" ({r.syntax})")
        if key not in rows:
            rows[key] = {}
            order.append(key)
        rows[key][r.platform] = SYMBOL.get(r.status, r.status)
    return order, rows


def terminal_lines(results: list, meta: dict | None = None) -> list[str]:
    meta = meta or {}
    lines = [f"IGVM conformance matrix -- QEMU {meta.get('qemu_version', '?')} "
             f"({meta.get('qemu', '?')})"]
    plats = [p for p in PLATFORMS if any(r.platform == p for r in results)]
    # A syntax the QEMU lacks: one line instead of a row of skips per case.
    shown = results
    for syntax in sorted({r.syntax for r in results} - {"cfg"}):
        cells = [r for r in results if r.syntax == syntax]
        reasons = {r.reason for r in cells}
        if all(r.status == "skip" for r in cells) and len(reasons) == 1:
            lines.append(f"syntax {syntax}: all {len(cells)} cells skipped: {reasons.pop()}")
            shown = [r for r in shown if r.syntax != syntax]
    order, rows = _grid(shown)
    width = max([len(k) for k in order] + [10])
    lines.append(f"{'case':{width}}  " + "  ".join(f"{p:8}" for p in plats))
    for key in order:
        lines.append(f"{key:{width}}  " + "  ".join(f"{rows[key].get(p, '-'):8}" for p in plats))
    lines.append("")
    for p, c in counts(results).items():
        modes = sorted({r.mode for r in results if r.platform == p})
        lines.append(f"{p:8} " + ", ".join(f"{v}={n}" for v, n in c.items() if n)
                     + f"   [{', '.join(modes)}]")
    bad = [r for r in results if r.status in ("fail", "suite-error")]
    for r in bad:
        lines.append(f"{r.status.upper()} {r.cell_id}: expected {r.expected}; "
                     f"observed {r.observed or r.reason}")
    xf = [r for r in results if r.status == "xfail"]
    for r in xf:
        lines.append(f"XFAIL {r.cell_id}: {r.reason} ({'; '.join(r.reference)})")
    return lines


def to_json(results: list, meta: dict | None = None) -> dict:
    return {"schema": SCHEMA, "meta": meta or {}, "counts": counts(results),
            "cells": [r.as_dict() for r in results]}


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(results: list, meta: dict | None = None) -> str:
    meta = meta or {}
    out = [f"# IGVM conformance matrix", "",
           f"QEMU {meta.get('qemu_version', '?')} (`{meta.get('qemu', '?')}`), "
           f"platform selection `{meta.get('platform', '?')}`.", "",
           "| platform | " + " | ".join(VERDICTS) + " |",
           "|---|" + "---|" * len(VERDICTS)]
    for p, c in counts(results).items():
        out.append(f"| {p} | " + " | ".join(str(c[v]) for v in VERDICTS) + " |")
    out += ["", "| cell | mode | verdict | expected | observed (evidence) | source |",
            "|---|---|---|---|---|---|"]
    for r in results:
        evidence = r.observed or ""
        if r.reason:
            evidence = f"{evidence} -- {r.reason}" if evidence else r.reason
        src = "; ".join(r.source + ([f"deviation: {x}" for x in r.reference]))
        if getattr(r, "note", ""):
            src += f" (note: {r.note})"
        out.append(f"| `{r.cell_id}` | {r.mode} | **{r.status}** | {_md(r.expected)} | "
                   f"{_md(evidence)} | {_md(src)} |")
    return "\n".join(out) + "\n"


def write(results: list, directory: Path, stem: str, meta: dict | None = None) -> list[Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` into ``directory``; console
    tails and QEMU lines are made safe first (harness.report.text), as in
    every other report."""
    directory.mkdir(parents=True, exist_ok=True)
    jp, mp = directory / f"{stem}.json", directory / f"{stem}.md"
    doc = json.loads(json.dumps(to_json(results, meta), default=str))
    jp.write_text(json.dumps(safe(doc), indent=1))
    mp.write_text(clean(markdown(results, meta)))
    return [jp, mp]
