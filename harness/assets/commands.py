"""``igvm-harness firmware list|fetch``: the Debian firmware, kernel and busybox."""

from __future__ import annotations

import argparse
import json
import sys


def _say(line: str) -> None:
    print(f"igvm-harness: {line}", file=sys.stderr, flush=True)


def _fetch(args: argparse.Namespace) -> int:
    from harness.assets import fetch

    entries = fetch.fetch(args.names or None, refresh=args.refresh, progress=_say)
    for name, e in entries.items():
        print(f"{name}\t{e['package']} {e['version']}\t{e['sha256']}")
    return 0


def _rows(names: list[str] | None) -> list[dict]:
    from harness.assets import fetch, pins, store
    from harness.assets.table import BY_NAME

    specs = fetch.specs_for(names)
    base = store.root()
    entries = store.load(base)
    pinned = pins.load()
    rows = []
    for spec in specs:
        e = entries.get(spec.name)
        pin = pinned.get(spec.name)
        row = {"name": spec.name, "package": spec.package, "kind": spec.kind,
               "purpose": BY_NAME[spec.name].purpose, "version": None, "suite": None,
               "sha256": None, "path": None, "status": "missing",
               "pin": {"version": pin.version, "sha256": pin.sha256} if pin else None}
        intact = bool(e) and fetch.is_intact(e, base)
        if e and intact:
            row.update(package=e["package"], version=e["version"], suite=e["suite"],
                       sha256=e["sha256"], path=str(base / e["path"]),
                       status="pinned" if e.get("pinned") else "unpinned")
            if not fetch.is_current(e, spec, pin, base):
                row["status"] = "stale"  # intact, but the pins or table now ask for another
        rows.append(row)
    return rows


def _list(args: argparse.Namespace) -> int:
    from harness.assets import fetch

    rows = _rows(args.names or None)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        if r["status"] == "missing":
            print(f"{r['name']:<22} {r['package']:<26} missing: run `igvm-harness firmware fetch`")
            continue
        print(f"{r['name']:<22} {r['package']:<26} {r['version']:<22} {r['suite']:<9} "
              f"{r['status']:<8} {r['sha256']}  {r['path']}")
        if r["status"] == "unpinned":
            from harness.assets import store
            _say(fetch.unpinned_warning(store.load()[r["name"]]))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    fw = subparsers.add_parser(
        "firmware", help="Debian's OVMF builds, kernel and busybox in the harness cache")
    sub = fw.add_subparsers(dest="firmware_command", metavar="ACTION")
    fw.set_defaults(func=lambda a: (fw.print_help(sys.stderr), 2)[1])

    f = sub.add_parser("fetch", help="fetch (pinned, verified by apt) into the cache; "
                                     "cached files are reused without network")
    f.add_argument("names", nargs="*", metavar="NAME", help="assets (default: all)")
    f.add_argument("--refresh", action="store_true",
                   help="resolve versions again even when the installed files are current")
    f.set_defaults(func=_fetch)

    ls = sub.add_parser("list", help="name, package, version, suite, sha256, path, status")
    ls.add_argument("names", nargs="*", metavar="NAME", help="assets (default: all)")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=_list)


__all__ = ["register"]
