"""Same verdicts? The conformance matrix on QEMU linked with the real libigvm and with the own one.

``igvm-harness qemu compare-libigvm`` builds (or finds in the cache) both
QEMU variants: the QEMU-under-test (``--libigvm auto``: the igvm crate from
crates.io where it can be had) and the own-library variant (``--libigvm
own --variant``: cached, never made the QEMU-under-test, never built by
set-up), runs ``pytest suites/matrix`` on each (each run writes its own
matrix JSON) and compares the two files cell by cell: the status (pass,
fail, xfail, boundary, skip...) and QEMU's error line, temporary paths
taken out.  Where they differ the own library is wrong (the crate is the
reference): the difference is listed, and the exit status is 1 unless it is
recorded in :data:`KNOWN` with the reason.

It needs a second QEMU build and two matrix runs (minutes), so it is not
part of the default test run; ``tests/qemu/test_compare_libigvm.py`` tests
the comparison itself on matrix JSON written by the matrix's own writer.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError

#: Cell fields whose difference is a difference of verdict.
COMPARED = ("status", "error_line")
#: cell id -> why the two libraries may differ there (none so far).
KNOWN: dict[str, str] = {}

_TMP = re.compile(r"(?:/tmp|/var/tmp|/dev/shm)/\S*?(?=[\s:\"\u201d,;)]|$)")


def normalize(text: str | None) -> str:
    """An error line without the run's temporary paths (each run has its own)."""
    return _TMP.sub("<tmp>", text or "").strip()


@dataclass
class Difference:
    cell_id: str
    field: str
    real: str
    own: str
    known: str = ""


@dataclass
class Comparison:
    compared: int = 0
    differing: list[Difference] = field(default_factory=list)
    only_real: list[str] = field(default_factory=list)
    only_own: list[str] = field(default_factory=list)

    @property
    def differing_cells(self) -> int:
        return len({d.cell_id for d in self.differing})

    @property
    def unexplained(self) -> list[Difference]:
        return [d for d in self.differing if not d.known]

    def as_dict(self) -> dict:
        return {"cells_compared": self.compared, "cells_differing": self.differing_cells,
                "unexplained": len({d.cell_id for d in self.unexplained}),
                "differences": [d.__dict__ for d in self.differing],
                "only_real": self.only_real, "only_own": self.only_own}


def _cells(matrix: dict) -> dict[str, dict]:
    if not isinstance(matrix, dict) or not isinstance(matrix.get("cells"), list):
        raise HarnessError("not a matrix report (no 'cells' list)")
    return {c["cell_id"]: c for c in matrix["cells"] if isinstance(c, dict) and "cell_id" in c}


def compare(real: dict, own: dict, known: dict[str, str] | None = None) -> Comparison:
    """Cell-by-cell comparison of two matrix reports (real library first)."""
    known = KNOWN if known is None else known
    a, b = _cells(real), _cells(own)
    out = Comparison(only_real=sorted(set(a) - set(b)), only_own=sorted(set(b) - set(a)))
    for cid in sorted(set(a) & set(b)):
        out.compared += 1
        for f in COMPARED:
            x, y = a[cid].get(f), b[cid].get(f)
            if f == "error_line":
                x, y = normalize(x), normalize(y)
            if x != y:
                out.differing.append(Difference(cid, f, str(x), str(y), known.get(cid, "")))
    return out


def render(c: Comparison, real_lib: str, own_lib: str) -> list[str]:
    lines = [f"libigvm comparison: {c.compared} cells compared, {c.differing_cells} differing "
             f"({len({d.cell_id for d in c.unexplained})} unexplained)",
             f"  real: {real_lib}", f"  own:  {own_lib}"]
    for d in c.differing:
        tag = f" [known: {d.known}]" if d.known else ""
        lines.append(f"  {d.cell_id}: {d.field}: real {d.real!r} / own {d.own!r}{tag}")
    if c.only_real or c.only_own:
        lines.append(f"  cells only in one run: real {len(c.only_real)}, own {len(c.only_own)}")
    return lines


def run_matrix(qemu: Path, out_dir: Path, extra: list[str], repo: Path) -> dict:
    """``pytest suites/matrix --qemu QEMU`` with its matrix report written to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "IGVM_HARNESS_MATRIX_DIR": str(out_dir)}
    cmd = [sys.executable, "-m", "pytest", "suites/matrix", "-p", "no:cacheprovider", "-q",
           "--qemu", str(qemu), *extra]
    print(f"igvm-harness: $ {' '.join(cmd)}", file=sys.stderr, flush=True)
    res = subprocess.run(cmd, cwd=repo, env=env, check=False)
    if res.returncode not in (0, 1):  # 1: some cell failed, still a report to compare
        raise HarnessError(f"the matrix run on {qemu} ended with status {res.returncode}")
    reports = sorted(out_dir.glob("matrix-*.json"))
    if not reports:
        raise HarnessError(f"the matrix run on {qemu} wrote no report in {out_dir}")
    return json.loads(reports[-1].read_text())


def main(jobs: int | None, out: Path, extra: list[str]) -> int:
    from harness import tree
    from harness.qemu import build
    from harness.qemu.libigvm import describe

    # both as variants: the comparison changes nothing about which QEMU is under test
    real = build.build(jobs=jobs, make_current=False)  # as set-up builds it (auto)
    own = build.build(jobs=jobs, libigvm_choice="own", make_current=False)
    real_lib, own_lib = describe(real.info.libigvm_info), describe(own.info.libigvm_info)
    if (real.info.libigvm_info or {}).get("origin") == "own":
        raise HarnessError(f"the QEMU-under-test links the own library too ({real_lib}): "
                           "nothing to compare (no crates.io or cargo here?)")
    repo = tree.checkout()
    a = run_matrix(real.binary, out / "real", extra, repo)
    b = run_matrix(own.binary, out / "own", extra, repo)
    c = compare(a, b)
    lines = render(c, real_lib, own_lib)
    print("\n".join(lines))
    (out / "comparison.json").write_text(json.dumps(
        {"real": real.info.libigvm_info, "own": own.info.libigvm_info, **c.as_dict()}, indent=1)
        + "\n")
    print(f"igvm-harness: written {out / 'comparison.json'}", file=sys.stderr)
    return 1 if c.unexplained or c.only_real or c.only_own else 0


__all__ = ["Comparison", "Difference", "KNOWN", "compare", "main", "normalize", "render",
           "run_matrix"]
