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


def _corim(args: argparse.Namespace) -> int:
    from harness.reference import oracle

    action = args.corim_action
    if action == "build":
        answers = oracle.corim_build([(args.file, args.platform, args.svn)])[0]
    elif action == "check":
        evidence = None
        if args.evidence:
            try:
                evidence = (args.platform, bytes.fromhex(args.evidence))
            except ValueError:
                print(f"igvm-harness: --evidence {args.evidence!r} is not hex", file=sys.stderr)
                return 2
        answers = [oracle.corim_check(args.document, args.signature, evidence)]
    elif action == "embed":
        answers = [oracle.corim_embed(args.file, args.out, args.platform, args.svn, args.signature)]
    else:
        answers = oracle.corim_read(args.files)
    for a in answers:
        print(json.dumps(a, indent=None if args.compact else 2))
    return 1 if any("error" in a and "request" in a for a in answers) else 0


def _register_corim(sub) -> None:
    c = sub.add_parser("corim", help="the crate's Launch Measurement CoRIM, its CoRIM library's "
                                     "verdict, its serializer and its reading of CoRIM headers",
                       description="Ask the igvm crate (corim feature) about CoRIM: "
                                   "tools/igvm-oracle/src/corim.rs says what each action calls.")
    csub = c.add_subparsers(dest="corim_action", metavar="ACTION", required=True)
    platforms = {"choices": ["sev-snp", "tdx", "vsm"], "default": "sev-snp"}
    b = csub.add_parser("build", help="the crate's CoRIM for FILE's launch digest, per SVN")
    b.add_argument("file", metavar="FILE")
    b.add_argument("--platform", **platforms)
    b.add_argument("--svn", type=int, nargs="+", default=[1])
    k = csub.add_parser("check", help="the CoRIM library's verdict on a document (and a signature)")
    k.add_argument("document", metavar="DOCUMENT")
    k.add_argument("--signature", metavar="SIG", help="a COSE_Sign1 for the detached document")
    k.add_argument("--evidence", metavar="HEX", help="appraise this launch digest (on --platform)")
    k.add_argument("--platform", **platforms)
    e = csub.add_parser("embed", help="the crate's serializer: FILE with the crate's CoRIM, to OUT")
    e.add_argument("file", metavar="FILE")
    e.add_argument("out", metavar="OUT")
    e.add_argument("--platform", **platforms)
    e.add_argument("--svn", type=int, default=1)
    e.add_argument("--signature", metavar="SIG", help="the 0x105 header's bytes (a COSE_Sign1)")
    r = csub.add_parser("read", help="the crate parser's verdict and the CoRIM headers it reads")
    r.add_argument("files", nargs="+", metavar="FILE")
    for p in (b, k, e, r):
        p.add_argument("--compact", action="store_true", help="one JSON line per answer")
        p.set_defaults(func=_corim)


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
    _register_corim(sub)
