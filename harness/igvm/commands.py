"""``igvm-harness inspect`` and ``igvm-harness validate``.

Exit status: 0 valid (or inspected), 1 invalid IGVM, 2 usage or I/O error.
Bad input yields lines of the form ``FILE: invalid IGVM: RULE: MESSAGE``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator

from harness.igvm.limits import vcpus  # the one --vcpus parser (measure, certify)

# The format modules are imported inside the commands: register() runs for
# every igvm-harness invocation (tests/cli/test_startup.py).

PLATFORM_CHOICES = ("native", "sev", "sev-es", "sev-snp", "tdx", "vsm", "cca")


def register(subparsers) -> None:
    p = subparsers.add_parser("inspect", help="show an IGVM file's headers, platforms, page "
                              "ranges and VP contexts (exit 1 if it breaks a rule), or an OVMF "
                              "image's footer table, SEV and IGVM metadata")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--pages", action="store_true", help="list every page data header too")
    _corim_key_option(p)
    p.set_defaults(func=cmd_inspect)

    w = subparsers.add_parser("wrap-ovmf", help="wrap an OVMF image into an IGVM file (firmware ending "
                              "at 4 GiB, SNP metadata pages, a VMSA per vCPU, IGVM parameters)")
    w.add_argument("file", metavar="FW.fd")
    w.add_argument("--vars", metavar="VARS.fd", default=None,
                   help="a split build's variable store (OVMF_VARS_4M.fd with FW.fd = OVMF_CODE_4M.fd): "
                        "wrapped below the code, where QEMU maps pflash unit 1")
    w.add_argument("--platform", default="native,sev,sev-es,sev-snp",
                   help="comma-separated platforms (default: %(default)s)")
    w.add_argument("--vcpus", type=vcpus, default=1, help="VMSAs for this many vCPUs (SEV-ES/SNP)")
    w.add_argument("-o", "--output", required=True, metavar="OUT.igvm")
    w.add_argument("--split", action="store_true",
                   help="one file per platform: OUT-native.igvm, OUT-sev-snp.igvm, ...")
    w.add_argument("--metadata-pages", choices=("zero", "unmeasured"), default="zero",
                   help="SNP_SEC_MEM / SVSM_CAA / KERNEL_HASHES as IGVM zero pages (measured as NORMAL "
                        "zeros by QEMU) or UNMEASURED pages; neither equals the classic launch's ZERO type")
    w.add_argument("--cpu-signature", type=_u32, default=None,
                   help="RDX in the VMSAs (CPUID.1:EAX; default: -cpu EPYC-v4's 0x800f12)")
    w.add_argument("--no-parameters", action="store_true",
                   help="leave out the IGVM parameter area even if the firmware declares one")
    w.add_argument("--quiet", action="store_true", help="do not print the notes")
    w.set_defaults(func=cmd_wrap_ovmf)

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
    _corim_key_option(v)
    v.set_defaults(func=cmd_validate)


def _corim_key_option(p) -> None:
    p.add_argument("--corim-key", metavar="PUB.pem", default=None,
                   help="verify the CoRIM signatures (header 0x105) with this public key "
                        "(PEM key or certificate)")


def _corim(f, violations, args):
    """The CoRIM headers' findings (harness.corim.embed), read only when the
    scan met a header type the parser does not handle (CoRIM headers are
    among those: the igvm C library QEMU links has no corim feature)."""
    if f is None or not (args.corim_key or any(v.rule == "unknown-header-type"
                                               for v in violations)):
        return None
    from harness.corim.embed import read as read_corim
    return read_corim(f, args.corim_key)


def _print_corim(name: str, found, key=None) -> None:
    if found is not None and not found and key:
        print(f"{name}: no CoRIM headers: nothing for --corim-key to verify")
    if found is None or not found:
        return
    for line in found.lines():
        print(f"{name}: {line}")
    print(f"{name}: note: CoRIM headers are unknown-header-type to the igvm C library QEMU "
          "links (built without the igvm crate's corim feature); read here as that feature reads them")


def _platform(name):
    from harness.igvm.qemu_lint import platform_type
    return platform_type(name)


def cmd_inspect(args: argparse.Namespace) -> int:
    from harness.igvm.describe import Description, describe
    from harness.igvm.parser import read, scan
    from harness.igvm.rules import IgvmFormatError
    data = read(args.file)
    if _is_ovmf(data):
        return _inspect_ovmf(data, args)
    walked = Description(include_pages=args.pages)  # gathered by the scan's walk: one pass
    f, violations = scan(data, consumers=[walked])
    if f is None:
        raise IgvmFormatError.from_violation(violations[0], args.file)
    # headers streamed, not held; a scan that stopped early: described from the model
    d = describe(f, include_pages=args.pages, lazy=True,
                 walked=walked if walked.complete else None)
    d["violations"] = [v.as_dict() for v in violations]
    d["violation_summary"] = violations.as_dict()
    found = _corim(f, violations, args)
    if args.json:
        extra = {"corim": found.as_dict()} if found is not None else {}
        _dump_streaming({"file": args.file, "size": len(data), **d, **extra})
    else:
        from harness.igvm.describe import render_lines  # streamed: render_text joins everything
        for line in render_lines(d, args.file):
            print(line)
        _print_violations(args.file, violations)
        _print_corim(args.file, found, args.corim_key)
    return 1 if violations or (found is not None and found.failed) else 0


def _is_ovmf(data) -> bool:
    """An OVMF volume, told by content (its GUIDed footer), never by file name."""
    from harness.igvm.defs import IGVM_MAGIC
    if bytes(data[:4]) == IGVM_MAGIC.to_bytes(4, "little"):
        return False  # an IGVM file: `measure` does not need the OVMF reader imported
    from harness.igvm.ovmf import is_ovmf_file
    return is_ovmf_file(data)


def _inspect_ovmf(data, args: argparse.Namespace) -> int:
    from harness.igvm import ovmf
    img = ovmf.read(data, args.file)
    if args.json:
        json.dump({"file": args.file, **ovmf.describe(img)}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(ovmf.render_text(img))
    return 0


def _u32(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value < 1 << 32:
        raise argparse.ArgumentTypeError(f"{text} is not a 32-bit value")
    return value


def _split_name(out: str, platform: str) -> str:
    root, ext = os.path.splitext(out)
    return f"{root}-{platform}{ext or '.igvm'}"


def cmd_wrap_ovmf(args: argparse.Namespace) -> int:
    from harness.igvm import ovmf, wrap_ovmf
    platforms = wrap_ovmf.parse_platforms(args.platform)
    fw = ovmf.load(args.file, args.vars)
    opts = dict(metadata_pages=args.metadata_pages, parameters=not args.no_parameters)
    if args.cpu_signature is not None:
        opts["cpu_signature"] = args.cpu_signature
    groups = [(p,) for p in platforms] if args.split else [platforms]
    results = [(_split_name(args.output, g[0]) if args.split else args.output,
                wrap_ovmf.wrap_file(fw, g, args.vcpus, **opts)) for g in groups]
    from harness.outputs import write_all
    write_all(((path, res.data) for path, res in results), prefix=".wrap-")  # all or nothing
    notes: list[str] = []
    for path, res in results:
        print(f"{path}: {len(res.data)} bytes, platforms {','.join(res.platforms)}, {res.vcpus} vCPU(s)")
        notes.extend(n for n in res.notes if n not in notes)
    if not args.quiet:
        for n in notes:
            print(f"  note: {n}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.igvm.parser import read, scan
    from harness.igvm.rules import Violation
    data = read(args.file)
    platform = _platform(args.platform)
    linter = None
    if args.qemu:  # linted in the same pass (used only if the file is valid)
        from harness.igvm.qemu_lint import Linter
        linter = Linter()
    f, violations = scan(data, platform=platform, strict=args.strict,
                         consumers=[linter] if linter else ())
    if platform is not None and f is not None and f.platform(platform) is None:
        # not a specification rule: the question asked was "valid for P?"
        violations.append(Violation("platform-absent",
                                    f"the file declares no {args.platform} platform"))
    findings = []
    if linter is not None and not violations:
        from harness.igvm.qemu_lint import lint
        findings = (linter.findings(platform) if linter.complete
                    else lint(f, platform=platform))
    found = _corim(f, violations, args)
    failed = (bool(violations) or any(x.severity == "error" for x in findings)
              or (found is not None and found.failed))
    if args.json:
        json.dump({"file": args.file, "valid": not violations, "ok": not failed,
                   "violations": [v.as_dict() for v in violations],
                   "violation_summary": getattr(violations, "as_dict", lambda: None)(),
                   "qemu_lint": [x.as_dict() for x in findings],
                   **({"corim": found.as_dict()} if found is not None else {})},
                  sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_violations(args.file, violations)
        _print_corim(args.file, found, args.corim_key)
        for x in findings:
            print(f"{args.file}: qemu: {x}")
        if not failed:
            print(f"{args.file}: valid IGVM" + (" (QEMU lint clean)" if args.qemu and
                                                 not findings else ""))
    return 1 if failed else 0


def _dump_streaming(doc: dict) -> None:
    """``json.dump(doc, indent=2)``, writing the values that are iterators
    (headers, page ranges) item by item instead of holding them as lists."""
    out = sys.stdout
    out.write("{")
    for n, (key, value) in enumerate(doc.items()):
        out.write(("," if n else "") + f"\n  {json.dumps(key)}: ")
        if callable(value):  # known once the iterators before it were written
            value = value()
        if not isinstance(value, Iterator):
            out.write(json.dumps(value, indent=2).replace("\n", "\n  "))
            continue
        empty = True
        for item in value:
            text = json.dumps(item, indent=2).replace("\n", "\n    ")
            out.write(("[" if empty else ",") + "\n    " + text)
            empty = False
        out.write("[]" if empty else "\n  ]")
    out.write("\n}\n")


def _print_violations(name: str, violations) -> None:
    """The (at most MAX_VIOLATIONS) violations, each with its rule id, then a
    summary line when there is more than one (a single violation stays one line)."""
    for v in violations:
        print(f"{name}: invalid IGVM: {v}")
    if len(violations) > 1 or getattr(violations, "truncated", False):
        print(f"{name}: invalid IGVM: {violations.summary()}")
