"""``igvm-harness qemu ...``: build, probe and locate the QEMU-under-test."""

from __future__ import annotations

import argparse
import json
import sys

from harness.errors import HarnessError


def _build(args: argparse.Namespace) -> int:
    from harness.qemu import build

    from harness.qemu.libigvm import describe

    options = build.CONFIGURE_OPTIONS if args.all_devices else build.DEFAULT_OPTIONS
    res = build.build(args.source, jobs=args.jobs, install_deps=args.install_deps, options=options,
                      libigvm_choice=args.libigvm, make_current=not args.variant)
    if res.cached:
        print(f"igvm-harness: using cached build {res.entry}", file=sys.stderr)
    print(f"igvm-harness: libigvm: {describe(res.info.libigvm_info or None)}", file=sys.stderr)
    print(res.binary)
    return 0


def _probe(args: argparse.Namespace) -> int:
    from harness.qemu import discover, probe

    found = discover.discover(args.qemu)
    caps = probe.probe(found.path, use_cache=not args.no_cache)
    if args.json:
        print(json.dumps(caps.to_json(), indent=2))
    else:
        print(f"(found via {found.how})")
        print("\n".join(caps.summary_lines()))
    return 0


def _path(args: argparse.Namespace) -> int:
    from harness.qemu import discover

    print(discover.discover(args.qemu).path)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.qemu import compare_libigvm

    return compare_libigvm.main(args.jobs, Path(args.output), args.pytest_args)


def _jobs(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def register(subparsers: argparse._SubParsersAction) -> None:
    qemu = subparsers.add_parser("qemu", help="build, probe and locate the QEMU under test")
    sub = qemu.add_subparsers(dest="qemu_command", metavar="ACTION")
    qemu.set_defaults(func=lambda a: (qemu.print_help(sys.stderr), 2)[1])

    b = sub.add_parser("build", help="build QEMU with IGVM from source into the cache")
    b.add_argument("--source", default="debian", metavar="debian[:VERSION]|PATH",
                   help="Debian's qemu source package (default: newest with IGVM), "
                        "or a QEMU source tree / tarball")
    b.add_argument("--jobs", "-j", type=_jobs, default=None, metavar="N",
                   help="parallel compile jobs (default: CPU count)")
    b.add_argument("--install-deps", action="store_true",
                   help="apt-get install missing Debian build dependencies")
    b.add_argument("--libigvm", choices=("auto", "system", "crates.io", "own"), default="auto",
                   help="the igvm C library to link: auto (default) = a system igvm >= 0.3 "
                        "(pkg-config), else the igvm crate from crates.io, else the harness's own "
                        "C library as the fallback")
    b.add_argument("--variant", action="store_true",
                   help="build into the cache without making it the QEMU-under-test "
                        "(e.g. --libigvm own for the comparison)")
    devs = b.add_mutually_exclusive_group()
    devs.add_argument("--lean", action="store_true",
                      help="only the devices the harness uses (harness/qemu/devices.py; the default)")
    devs.add_argument("--all-devices", action="store_true",
                      help="QEMU's default device set instead of the harness's lean one")
    b.set_defaults(func=_build)

    p = sub.add_parser("probe", help="report a QEMU's IGVM/SEV capabilities and the host's")
    p.add_argument("--qemu", metavar="PATH", default=None,
                   help="QEMU binary (default: $QEMU, the harness's build, then PATH)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-cache", action="store_true", help="probe again, ignoring the cache")
    p.set_defaults(func=_probe)

    c = sub.add_parser("compare-libigvm",
                       help="run the matrix on QEMU with the real libigvm and with the own one, "
                            "compare cell by cell (builds the own-library variant, cached)")
    c.add_argument("--jobs", "-j", type=_jobs, default=None, metavar="N")
    c.add_argument("--output", default="reports/libigvm-compare", metavar="DIR",
                   help="where both matrix reports and comparison.json go (default: %(default)s)")
    c.add_argument("pytest_args", nargs="*", metavar="PYTEST_ARG",
                   help="more pytest arguments for both matrix runs (after --)")
    c.set_defaults(func=_compare)

    w = sub.add_parser("path", help="print the QEMU binary under test")
    w.add_argument("--qemu", metavar="PATH", default=None)
    w.set_defaults(func=_path)


__all__ = ["register", "HarnessError"]
