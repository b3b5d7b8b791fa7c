"""``igvm-harness native build / status``: the harness's C extension modules."""

from __future__ import annotations

import argparse
import sys


def _build(args: argparse.Namespace) -> int:
    from harness.native import build

    for name in args.modules or _names():
        path, built = build.build(name, force=args.force)
        print(f"{name}: {'built' if built else 'present'}: {path}", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace) -> int:
    from harness import native

    rows = {}
    for name in _names():
        mod, line = native.status(name)
        rows[name] = {"present": mod is not None, "path": native.module_path(name), "status": line}
    if args.json:
        import json

        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for row in rows.values():
            print(row["status"])
    return 0 if all(r["present"] for r in rows.values()) else 1


def _names() -> list[str]:
    from harness import native

    return list(native.SOURCES)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("native", help="the harness's C extension modules (fast SNP chain)",
                              description="Build or check the harness's own C extension modules "
                                          "(compiled into the harness cache; pure-Python paths run "
                                          "when they are absent).")
    sub = p.add_subparsers(dest="native_command", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="compile the modules into the harness cache (cc, python3-dev, "
                                     "libssl-dev)")
    b.add_argument("modules", nargs="*", metavar="MODULE", help="default: all")
    b.add_argument("--force", action="store_true", help="rebuild even when the cache entry exists")
    b.set_defaults(func=_build)
    s = sub.add_parser("status", help="say whether each module is built and loads (exit 1 if not)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_status)
