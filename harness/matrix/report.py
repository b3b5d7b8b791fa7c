"""The matrix report: expected vs observed per cell, with the evidence
(QEMU's error line or the guest's report), as terminal text, JSON and
Markdown.  Counts per platform and verdict come first."""

from __future__ import annotations

import json
import textwrap
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


def _wrap(text: str, width: int, indent: str, first: str = "") -> list[str]:
    """*text* wrapped to *width*: continuation lines under *indent*."""
    return textwrap.wrap(text, width, initial_indent=first, subsequent_indent=indent,
                         break_on_hyphens=False, break_long_words=False) or [first]


def _cells_text(rs: list) -> str:
    """``case[rule] (syntax)`` names grouped by the platforms they ran on:
    one name per row of the table, not one per cell."""
    plats: dict[str, list[str]] = {}
    for r in rs:
        key = r.case + (f"[{r.rule}]" if r.rule else "") + ("" if r.syntax == "cfg"
                                                            else f" ({r.syntax})")
        plats.setdefault(key, []).append(r.platform)
    by_set: dict[tuple, list[str]] = {}
    for key, ps in plats.items():
        by_set.setdefault(tuple(p for p in PLATFORMS if p in ps), []).append(key)
    return "; ".join(f"{', '.join(keys)} on {'/'.join(ps)}" for ps, keys in by_set.items())


def terminal_lines(results: list, meta: dict | None = None, verbosity: int = 0,
                   width: int = 100) -> list[str]:
    """The matrix as the terminal shows it, each reason once.

    Verbosity 0 and up: the case x platform table, counts per platform, every
    failing cell, the known deviations grouped by reason with their cells.
    Below 0 (``-q``): counts, failures and one line per deviation reason, so
    that the summary fits a screen; the reports hold the rest."""
    meta = meta or {}
    width = max(width, 60)
    lines = [f"QEMU {meta.get('qemu_version', '?')} at {meta.get('qemu', '?')}"
             f"  (--platform={meta.get('platform', '?')}, --accel={meta.get('accel', '?')})"]
    plats = [p for p in PLATFORMS if any(r.platform == p for r in results)]
    for a in meta.get("absent_syntaxes", []):
        lines.append(f"IGVM syntax {a['syntax']}: {a['cells']} cells not run, "
                     f"QEMU lacks it (one skip says why)")
    shown = results
    # A syntax whose every cell skipped for one reason: one line, not a row of skips per case.
    for syntax in sorted({r.syntax for r in results} - {"cfg"}):
        cells = [r for r in results if r.syntax == syntax]
        reasons = {r.reason for r in cells}
        if all(r.status == "skip" for r in cells) and len(reasons) == 1:
            lines += _wrap(f"IGVM syntax {syntax}: all {len(cells)} cells skipped: {reasons.pop()}",
                           width, "  ")
            shown = [r for r in shown if r.syntax != syntax]
    if verbosity >= 0:
        order, rows = _grid(shown)
        w = max([len(k) for k in order] + [10])
        lines.append(f"{'case':{w}}  " + "  ".join(f"{p:8}" for p in plats).rstrip())
        for key in order:
            lines.append((f"{key:{w}}  " + "  ".join(f"{rows[key].get(p, '-'):8}"
                                                     for p in plats)).rstrip())
        lines.append("")
    for p, c in counts(results).items():
        modes = sorted({r.mode for r in results if r.platform == p})
        lines.append(f"{p:8} " + ", ".join(f"{v}={n}" for v, n in c.items() if n)
                     + f"   [{', '.join(modes)}]")
    for r in (r for r in results if r.status in ("fail", "suite-error")):
        lines += _wrap(f"{r.status.upper()} {r.cell_id}: expected {r.expected}; "
                       f"observed {r.observed or r.reason}", width, "    ")
    groups: dict[str, list] = {}
    for r in (r for r in results if r.status == "xfail"):
        groups.setdefault(r.reason, []).append(r)
    for reason, rs in groups.items():
        lines += _wrap(f"XFAIL x{len(rs)} {reason}", width, "    ")
        if verbosity >= 0:
            refs = list(dict.fromkeys(x for r in rs for x in r.reference))
            if refs:
                lines += _wrap("reference: " + "; ".join(refs), width, "      ", "    ")
            lines += _wrap("cells: " + _cells_text(rs), width, "      ", "    ")
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
