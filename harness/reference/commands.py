"""``igvm-harness oracle ...``: the igvm crate from crates.io as a reference oracle."""

from __future__ import annotations

import argparse
import json
import sys


def _build(args: argparse.Namespace) -> int:
    from harness.reference import oracle

    print(oracle.build(force=args.force))
    return 0


def _status(args: argparse.Namespace) -> int:
    from harness.reference import oracle

    p, line = oracle.status()
    if args.json:
        json.dump({"present": p is not None, "path": str(p) if p else None, "status": line,
                   "record": oracle.record()}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(line)
    return 0 if p else 1


def _ask(args: argparse.Namespace) -> int:
    from harness.reference import oracle

    answers = (oracle.parse if args.oracle_command == "parse" else oracle.snp_digest)(args.files)
    for a in answers:
        print(json.dumps(a, indent=None if args.compact else 2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("oracle", help="the igvm crate (crates.io) as a reference oracle",
                              description="Build tools/igvm-oracle (the igvm crate's parser and "
                                          "SNP measurement) into the harness cache and ask it "
                                          "about IGVM files.")
    sub = p.add_subparsers(dest="oracle_command", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="build the oracle with cargo (needs crates.io the first time)")
    b.add_argument("--force", action="store_true")
    b.set_defaults(func=_build)
    s = sub.add_parser("status", help="say whether the oracle is built (exit 1 if not) and why")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_status)
    for name, what in (("parse", "the crate parser's verdict per platform, error and IGVMAPI code"),
                       ("snp-digest", "the crate's SEV-SNP launch digest")):
        a = sub.add_parser(name, help=what)
        a.add_argument("files", nargs="+", metavar="FILE")
        a.add_argument("--compact", action="store_true", help="one JSON line per file")
        a.set_defaults(func=_ask)
