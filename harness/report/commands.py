"""CLI: ``report merge|validate|render|compare|lost-cells`` and ``matrix run``.

Long runs print progress on stderr (one line per matrix cell) and end with a
concise summary on stdout; the reports land in ``--output`` (default
``reports/``).  ``certify`` is the certify layer's own command
(:mod:`harness.certify.commands`): the report layer never imports certify.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


# Everything else is imported inside the command functions: registering these
# subcommands runs for every ``igvm-harness`` invocation (tests/cli/test_startup.py).

DEFAULT_OUTPUT = Path("reports")
#: ``--history`` default; equal to harness.report.merge.DEFAULT_HISTORY (same test).
DEFAULT_HISTORY = 30


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ------------------------------------------------------------------- report
def _merge(args: argparse.Namespace) -> int:
    from harness.report import merge
    from harness.report.model import VERDICTS

    dashboard = merge.merge_files(args.files, history_limit=args.history)
    paths = merge.write_dashboard(dashboard, args.output)
    s = dashboard["summary"]
    counts = ", ".join(f"{s[v]} {v}" for v in VERDICTS if s.get(v))
    configs = {c["configuration"] for c in dashboard["columns"]}
    print(f"dashboard: {len(configs)} configurations ({len(dashboard['columns'])} platform "
          f"columns) x {len(dashboard['rows'])} cases from {len(dashboard['runs'])} runs: "
          f"{s['verdict'].upper()} ({counts})")
    changed = [c for c in dashboard["cells"] if c["changed"]]
    for cell in changed[:20]:
        print(f"  changed: {cell['row']} on {cell['column']}: "
              f"{cell['history'][-2]['verdict']} -> {cell['latest']}")
    if len(changed) > 20:
        print(f"  ... and {len(changed) - 20} more changed cells")
    print(f"  dashboard: {paths['html']}   json: {paths['json']}")
    return 0


def _lost_cells(args: argparse.Namespace) -> int:
    from harness.report import lost

    written = lost.write_lost([Path(m) for m in args.markers])
    for path, marker in written:
        print(f"cell {marker['platform']}/{marker['accel']} ({marker.get('job') or 'job ?'}) "
              f"wrote no results: {path} says so (error)")
    if not args.markers:
        print("lost-cells: no cell markers given (no cell started?)")
    elif not written:
        print(f"lost-cells: every cell of {len(args.markers)} wrote results")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from harness.report import schema

    for path in args.files:
        doc = schema.load(path)
        print(f"{path}: valid {doc['schema']} v{doc['schema_version']}")
    return 0


def _render(args: argparse.Namespace) -> int:
    from harness.report import merge, schema, writers
    from harness.report.model import Report

    doc = schema.load(args.file)
    if doc["schema"] == merge.DASHBOARD_ID:
        paths = merge.write_dashboard(doc, args.output)
    else:
        paths = writers.write_all(Report.from_dict(doc), args.output, Path(args.file).stem)
    print(f"rendered {paths['html']}")
    return 0


# ------------------------------------------------------------------- matrix
def _matrix_run(args: argparse.Namespace) -> int:
    from harness.report import matrix_run, merge

    started = time.monotonic()
    spec = matrix_run.load_spec(args.matrix)
    if args.pytest_args is not None:
        spec.pytest_args = matrix_run.split_pytest_args(args.pytest_args)
    outdir = Path(args.output) if args.output else matrix_run.default_output(spec)
    cells = matrix_run.expand(spec)
    if args.dry_run:
        for q in spec.qemus:
            if q.source:
                print(f"qemu {q.name}: built from {q.source} before the cells run")
        for i, cell in enumerate(cells, 1):
            print(f"[{i}/{len(cells)}] {cell.label}")
        return 0
    matrix_run.build_qemus(spec, progress=_stderr)
    results = matrix_run.run(spec, cells, outdir, progress=_stderr)
    jsons = [p for r in results for p in r.json_files]
    dashboard = merge.merge_files(jsons, history_limit=args.history) if jsons else None
    print(f"matrix {spec.name}: {len(cells)} cells in {time.monotonic() - started:.0f} s")
    for r in results:
        print(f"  {r.cell.label:<48} {r.summary}")
    if dashboard is not None:
        paths = merge.write_dashboard(dashboard, outdir)
        print(f"  dashboard: {paths['html']}")
    return 1 if any(r.failed for r in results) else 0


def _compare(args: argparse.Namespace) -> int:
    from harness.report.compare import compare_files
    total, diffs = compare_files(Path(args.a), Path(args.b))
    for d in diffs:
        print(d.line())
    print(f"{total} tests compared, {len(diffs)} differ")
    return 1 if diffs else 0


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


# ----------------------------------------------------------------- register
def register(subparsers: argparse._SubParsersAction) -> None:
    r = subparsers.add_parser("report", help="merge, validate or re-render result files")
    rsub = r.add_subparsers(dest="report_command", metavar="ACTION")
    r.set_defaults(func=lambda _args: _usage(r))
    m = rsub.add_parser("merge", help="merge many hosts' results into one dashboard",
                        description="Inputs: results JSON files and/or an earlier "
                                    "dashboard.json (its history is carried over).")
    m.add_argument("files", nargs="+", metavar="FILE")
    m.add_argument("--output", metavar="DIR", default=str(DEFAULT_OUTPUT / "dashboard"),
                   help="output directory (default: reports/dashboard)")
    m.add_argument("--history", type=int, default=DEFAULT_HISTORY,
                   help=f"runs kept per cell (default {DEFAULT_HISTORY})")
    m.set_defaults(func=_merge)
    lc = rsub.add_parser("lost-cells", help="an error result for each CI cell that wrote none",
                         description="For each cell marker (cell.txt, written first by every "
                                     "cell of the ci-examples pipelines) in a directory without "
                                     "results, write a results document with one error check "
                                     "naming the job: a dead cell keeps its dashboard column.")
    lc.add_argument("markers", nargs="*", metavar="CELL.TXT")
    lc.set_defaults(func=_lost_cells)
    v = rsub.add_parser("validate", help="check files against their versioned JSON schema")
    v.add_argument("files", nargs="+", metavar="FILE")
    v.set_defaults(func=_validate)
    h = rsub.add_parser("render", help="re-render the HTML (and JUnit) of a JSON file")
    h.add_argument("file", metavar="FILE")
    h.add_argument("--output", metavar="DIR", default=str(DEFAULT_OUTPUT))
    h.set_defaults(func=_render)
    c = rsub.add_parser("compare", help="two runs' verdicts, test by test (JUnit XML or "
                                        "matrix JSON): exit 1 where one differs",
                        description="e.g. a serial and a parallel run of the same suite: "
                                    "every test's verdict (skip reasons included) and every "
                                    "matrix cell's status must be equal.")
    c.add_argument("a", metavar="A")
    c.add_argument("b", metavar="B")
    c.set_defaults(func=_compare)

    if "matrix" not in subparsers.choices:
        x = subparsers.add_parser("matrix", help="run a matrix of QEMU builds x platforms x "
                                                 "accelerators locally")
        xsub = x.add_subparsers(dest="matrix_command", metavar="ACTION")
        x.set_defaults(func=lambda _args: _usage(x))
        run = xsub.add_parser("run", help="run every cell of MATRIX.toml, then merge")
        run.add_argument("matrix", metavar="MATRIX.toml")
        run.add_argument("--output", metavar="DIR", default=None,
                         help="output directory (default: reports/matrix-NAME-TIME)")
        run.add_argument("--history", type=int, default=DEFAULT_HISTORY)
        run.add_argument("--pytest-args", metavar="ARGS", default=None,
                         help="pytest arguments of every cell instead of the file's "
                              "pytest_args (one shell-quoted string, e.g. \"suites/matrix "
                              "-k 'page-normal'\"): a short run of a lab's matrix")
        run.add_argument("--dry-run", action="store_true", help="list the cells only")
        run.set_defaults(func=_matrix_run)
