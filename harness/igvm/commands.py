"""``igvm-harness inspect`` and ``igvm-harness validate``.

Exit status: 0 valid (or inspected), 1 invalid IGVM, 2 usage or I/O error.
Bad input yields lines of the form ``FILE: invalid IGVM: RULE: MESSAGE``.
"""

from __future__ import annotations

import argparse
import json
import sys

# The format modules are imported inside the commands: register() runs for
# every igvm-harness invocation (tests/cli/test_startup.py).

PLATFORM_CHOICES = ("native", "sev", "sev-es", "sev-snp", "tdx", "vsm", "cca")


def register(subparsers) -> None:
    p = subparsers.add_parser("inspect", help="show an IGVM file's headers, platforms, page "
                              "ranges and VP contexts (exit 1 if it breaks a rule)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--pages", action="store_true", help="list every page data header too")
    p.set_defaults(func=cmd_inspect)

    v = subparsers.add_parser("validate", help="check an IGVM file against the specification "
                              "(exit 0 valid, 1 invalid, 2 usage/IO error)")
    v.add_argument("file", metavar="FILE")
    v.add_argument("--platform", choices=PLATFORM_CHOICES, default=None,
                   help="apply the reference parser's isolation filter for this platform "
                   "(and require the file to declare it)")
    v.add_argument("--strict", action="store_true",
                   help="also apply specification rules the reference parser does not enforce")
    v.add_argument("--qemu", action="store_true",
                   help="also report what QEMU will refuse (QEMU lint); lint errors fail")
    v.add_argument("--json", action="store_true", help="machine-readable output")
    v.set_defaults(func=cmd_validate)


def _platform(name):
    from harness.igvm.qemu_lint import platform_type
    return platform_type(name)


def cmd_inspect(args: argparse.Namespace) -> int:
    from harness.igvm.describe import describe, render_text
    from harness.igvm.parser import read, scan
    from harness.igvm.rules import IgvmFormatError
    data = read(args.file)
    f, violations = scan(data)
    if f is None:
        raise IgvmFormatError.from_violation(violations[0], args.file)
    d = describe(f, include_pages=args.pages)
    d["violations"] = [v.as_dict() for v in violations]
    if args.json:
        json.dump({"file": args.file, "size": len(data), **d}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render_text(d, args.file))
        for v in violations:
            print(f"{args.file}: invalid IGVM: {v}")
    return 1 if violations else 0


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.igvm.parser import read, scan
    from harness.igvm.rules import Violation
    data = read(args.file)
    platform = _platform(args.platform)
    f, violations = scan(data, platform=platform, strict=args.strict)
    if platform is not None and f is not None and f.platform(platform) is None:
        # not a specification rule: the question asked was "valid for P?"
        violations.append(Violation("platform-absent",
                                    f"the file declares no {args.platform} platform"))
    findings = []
    if args.qemu and not violations:
        from harness.igvm.qemu_lint import lint
        findings = lint(data, platform=platform)
    failed = bool(violations) or any(x.severity == "error" for x in findings)
    if args.json:
        json.dump({"file": args.file, "valid": not violations, "ok": not failed,
                   "violations": [v.as_dict() for v in violations],
                   "qemu_lint": [x.as_dict() for x in findings]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for v in violations:
            print(f"{args.file}: invalid IGVM: {v}")
        for x in findings:
            print(f"{args.file}: qemu: {x}")
        if not failed:
            print(f"{args.file}: valid IGVM" + (" (QEMU lint clean)" if args.qemu and
                                                 not findings else ""))
    return 1 if failed else 0
