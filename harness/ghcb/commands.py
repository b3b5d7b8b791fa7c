"""``igvm-harness guest check FILE --platform sev-es|sev-snp``: run an
IGVM file's guest in the GHCB model (harness.ghcb) and say whether it gets
to its report, before a lab host is booked.

Exit status: 0 when the guest ends through isa-debug-exit with the expected
status, prints the IGVMT line protocol reporting it and breaks no GHCB
rule; 1 otherwise (the message names the exit code and the section); 2 for
usage and I/O errors.
"""

from __future__ import annotations

import argparse
import sys

from harness.errors import HarnessError
from harness.options import integer, seconds, unsigned

CHECK_PLATFORMS = ("sev-es", "sev-snp")   # harness.ghcb.PLATFORMS (kept import-free)


def _check(args: argparse.Namespace) -> int:
    try:
        import unicorn  # noqa: F401  (the CPU emulator the model runs on)
    except ImportError:
        raise HarnessError("the GHCB model needs the 'unicorn' package (pip install unicorn, or "
                           "the harness's [dev] extra)") from None
    from harness.ghcb import DEFAULT_CPU, run_file
    from harness.ghcb.machine import Limits
    from harness.ghcb.report import judge, render
    from harness.measure.commands import host_from_args

    if args.vcpu_type is None and args.cpu_signature is None:
        args.vcpu_type = DEFAULT_CPU[0]
    profile = _profile(args, host_from_args)
    result = run_file(args.file, args.platform, vcpus=args.vcpus, ram=args.memory << 20,
                      profile=profile, cbit=args.cbitpos, reduced_phys_bits=args.reduced_phys_bits,
                      debug_exit_port=args.debug_exit_port,
                      limits=Limits(args.max_instructions, args.timeout))
    verdict = judge(result, args.expect_status)
    if args.json:
        import json
        json.dump({"platform": result.platform, "status": result.status, "reason": result.reason,
                   "passed": verdict.passed, "message": verdict.message,
                   "instructions": result.instructions, "exits": result.exits,
                   "exit_count": result.exit_count, "console": result.console.decode("ascii", "replace"),
                   "findings": [f.line() for f in result.findings], "notes": result.log},
                  sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render(result, verdict))
    return 0 if verdict.passed else 1


def _profile(args, host_from_args):
    from harness.measure.kvm_vmsa import QEMU_CPU_MODELS, cpu_signature
    from harness.ghcb import DEFAULT_CPU
    if args.vcpu_type == DEFAULT_CPU[0] and DEFAULT_CPU[0] not in QEMU_CPU_MODELS:
        args.cpu_signature = cpu_signature(*DEFAULT_CPU[1:])
    return host_from_args(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    from harness.measure.commands import add_host_arguments
    p = subparsers.add_parser("guest", help="run an SEV-ES/SNP guest in the GHCB model")
    sub = p.add_subparsers(dest="guest_command", metavar="SUBCOMMAND")
    c = sub.add_parser(
        "check", help="run FILE's vCPU 0 in a CPU emulator against a model of KVM's GHCB handling",
        description="Run the guest of an SEV-ES/SEV-SNP IGVM file in unicorn, from the VMSA the launch "
                    "measures, against a model of the hypervisor's GHCB protocol (AMD 56421 rev 2.03, "
                    "as KVM answers it); pass when it reports 'IGVMT done status=N' and exits "
                    "through isa-debug-exit.")
    c.add_argument("file", metavar="FILE")
    c.add_argument("--platform", required=True, choices=CHECK_PLATFORMS)
    c.add_argument("--expect-status", type=unsigned(8), default=0x2A, metavar="N",
                   help="the status the guest must report and exit with (default 0x2a, the "
                        "matrix's)")
    c.add_argument("--vcpus", type=integer, default=1, help="vCPUs of the launch (vCPU 0 runs)")
    c.add_argument("--memory", type=integer, default=256, metavar="MIB",
                   help="guest RAM in MiB, as -m (default 256, the matrix's)")
    c.add_argument("--cbitpos", type=integer, default=51, help="the sev-guest object's cbitpos")
    c.add_argument("--reduced-phys-bits", type=integer, default=1)
    c.add_argument("--debug-exit-port", type=unsigned(16), default=0x501)
    c.add_argument("--max-instructions", type=integer, default=2_000_000,
                   help="end the run after this many instructions (default %(default)s)")
    c.add_argument("--timeout", type=seconds, default=60.0, metavar="S",
                   help="end the run after S seconds (default %(default)s)")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    add_host_arguments(c)
    for action in c._actions:        # the CPU the matrix's QEMU runs (no -cpu): qemu64
        if action.dest == "vcpu_type":
            action.default = None
            action.help = "QEMU -cpu model, for the CPU signature in RDX (default: qemu64, QEMU's)"
    c.set_defaults(func=_check)
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), 2)[1])
