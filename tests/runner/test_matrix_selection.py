"""How the matrix suite is collected, seen from outside (a pytest run of
suites/matrix): --platform=X deselects the other platforms' cells, and the
cells of an IGVM syntax the QEMU lacks are one skip naming the capability.

Expected counts come from the expectation data (harness.matrix.cells), the
capability from what the binary itself lists (``-object help``,
``-object sev-guest,help``), not from the plugin under test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from harness.expect.table import load
from harness.matrix.cells import generate

REPO = Path(__file__).resolve().parents[2]
CELLS = generate(load())


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, IGVM_HARNESS_MATRIX_DIR=str(tmp_path / "matrix"))
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           "-p", "no:xdist", "--basetemp", str(tmp_path / "bt"),
                           "suites/matrix", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _lists(qemu: str, what: str) -> str:
    return subprocess.run([qemu, "-object", what], capture_output=True, text=True).stdout


def test_platform_choice_deselects_the_other_cells(tmp_path, qemu_binary):
    res = _pytest(tmp_path, "--qemu", qemu_binary, "--platform=sev", "--collect-only", "-q")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    per_platform = Counter(c.platform for c in CELLS)
    others = sum(n for p, n in per_platform.items() if p != "sev")
    early = "igvm-file" in _lists(qemu_binary, "sev-guest,help")
    # the sev cells of the early syntax: one item standing for all of them when QEMU lacks it
    sev = per_platform["sev"]
    if not early:
        sev_early = sum(1 for c in CELLS if c.platform == "sev" and c.syntax == "sev-guest")
        others -= sum(1 for c in CELLS if c.platform != "sev" and c.syntax == "sev-guest")
        sev = sev - sev_early + 1
    last = res.stdout.strip().splitlines()[-1]
    assert last.startswith(f"{sev}/{sev + others} tests collected ({others} deselected)"), last


def test_a_qemu_without_igvm_collapses_each_syntax_into_one_skip(tmp_path, stock_qemu):
    assert "igvm-cfg" not in _lists(stock_qemu, "help")
    res = _pytest(tmp_path, "--qemu", stock_qemu, "-rs")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    per_syntax = Counter(c.syntax for c in CELLS)
    skips = re.findall(r"^SKIPPED \[1\] .*?: (.*)$", res.stdout, re.M)
    assert len(skips) == 2, res.stdout[-3000:]
    assert any(f"lacks igvm-cfg: the {per_syntax['cfg']} cells of IGVM syntax cfg not run" in s
               for s in skips), skips
    assert any("lacks the early syntax" in s and
               f"the {per_syntax['sev-guest']} cells of IGVM syntax sev-guest not run" in s
               for s in skips), skips
    assert res.stdout.strip().splitlines()[-1].strip("= ").startswith("2 skipped")
