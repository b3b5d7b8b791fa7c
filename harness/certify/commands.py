"""CLI: ``igvm-harness certify FILE``: the certification profile on a vendor image.

Progress goes to stderr (one line per check, and a line every few seconds
while a boot waits for its marker); a concise summary ends on stdout; the
reports (JSON, JUnit XML, HTML) land in ``--output`` (default ``reports/``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.errors import HarnessError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from harness.report.model import Report

# Everything else is imported inside the command: registering it runs for
# every ``igvm-harness`` invocation (tests/cli/test_startup.py).

DEFAULT_OUTPUT = Path("reports")
#: ``--platform`` choices; equal to harness.certify.model.PLATFORM_CHOICES
#: (checked by tests/cli/test_startup.py), repeated here so that building the
#: parser does not import the certify profile and what it uses.
CERTIFY_PLATFORMS = ("auto", "native", "sev", "sev-es", "sev-snp")
#: ``--boot-timeout`` default; equal to harness.certify.model.BOOT_TIMEOUT (same test).
BOOT_TIMEOUT = 30.0


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _counts_line(summary: dict) -> str:
    from harness.report.model import VERDICTS

    parts = [f"{summary[v]} {v}" for v in VERDICTS if summary.get(v)]
    return ", ".join(parts) or "no checks"


def _certify(args: argparse.Namespace) -> int:
    from harness.certify import profile
    from harness.report import writers

    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise HarnessError(f"{args.output}: not a directory")
    target = profile.prepare(args.file, args.platform, qemu=args.qemu, accel=args.accel,
                             vcpus=args.vcpus, boot=not args.no_boot,
                             boot_timeout=args.boot_timeout,
                             workdir=Path(args.output) / "work",
                             expect_console=args.expect_console, disk=args.disk,
                             corim_key=args.corim_key)
    try:  # before the first boot writes its logs under OUTPUT/work
        Path(args.output).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"{args.output}: cannot create: {exc.strerror or exc}") from None
    if not args.quiet:
        target.progress = _stderr
        from harness.inputs import sha256_file

        sha = sha256_file(target.image)
        _stderr(f"certify {target.image} (sha256 {sha[:16]}...) platforms: "
                f"{', '.join(p for p in target.platforms) or 'none'}; "
                f"QEMU: {target.qemu or 'none found'}")

    def progress(index: int, total: int, planned, check) -> None:
        if args.quiet or check is None:
            return
        _stderr(f"[{index:>2}/{total}] {planned.id:<28} {check.verdict:<8} "
                f"{check.message[:100]}")

    report = profile.certify(target, progress, command=["igvm-harness", "certify",
                                                        *sys.argv[2:]])
    paths = writers.write_all(report, args.output)
    _print_summary(report, paths)
    return 1 if report.verdict() == "fail" else 0


def _print_summary(report: Report, paths: dict[str, Path]) -> None:
    summary = report.summary()
    print(f"{report.title}: {summary['verdict'].upper()} "
          f"({_counts_line(summary)}; {report.run.get('duration_s', 0):.1f} s)")
    for check in report.checks:
        if check.verdict in ("fail", "error", "xpass"):
            print(f"  {check.verdict.upper()} {check.id}: {check.message}")
    print(f"  report: {paths['html']}")
    print(f"  json:   {paths['json']}   junit: {paths['junit']}")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "certify", help="run the certification profile on a vendor IGVM image",
        description="Specification validation, QEMU lint and, per declared platform, "
                    "directive support, VMSA restrictions, predicted launch measurement and "
                    "a boot as far as this host allows; writes JSON, JUnit XML and HTML.")
    p.add_argument("file", metavar="FILE", help="the IGVM image")
    p.add_argument("--platform", choices=CERTIFY_PLATFORMS, default="auto",
                   help="platform to certify (default: every platform the file declares)")
    p.add_argument("--output", metavar="DIR", default=str(DEFAULT_OUTPUT),
                   help="report directory (default: reports/)")
    p.add_argument("--qemu", metavar="PATH", default=None, help="QEMU binary under test")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    from harness.igvm.limits import add_vcpus
    add_vcpus(p, help="vCPUs for measurement and boot (default 1)")
    p.add_argument("--no-boot", action="store_true", help="skip the boot checks")
    p.add_argument("--boot-timeout", type=float, default=BOOT_TIMEOUT, metavar="S",
                   help=f"seconds a boot may take to show its marker (default "
                        f"{BOOT_TIMEOUT:g}; the run ends at the marker)")
    p.add_argument("--expect-console", metavar="REGEX", default=None,
                   help="what a boot must print on COM1 to count as booted (default: the "
                        "markers of the payload found in the image: OVMF's boot manager or "
                        "shell, a Linux banner, the harness guests' last line)")
    p.add_argument("--disk", metavar="IMG", default=None,
                   help="an OS disk (raw or qcow2) on the boot's AHCI port, never written "
                        "(QEMU's snapshot overlay); needs --expect-console")
    p.add_argument("--corim-key", metavar="PUB.pem", default=None,
                   help="verify the image's CoRIM signatures (header 0x105) with this public key")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_certify)
