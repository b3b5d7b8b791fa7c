"""``igvm-harness measure``: print the launch digest QEMU+KVM will produce for an IGVM file."""

from __future__ import annotations

import argparse
import sys

from harness.errors import HarnessError
from harness.options import unsigned as _unsigned
from harness.igvm.limits import vcpus as _vcpus
from harness.measure.kvm_vmsa import (DEFAULT_CPU_MODEL, DEFAULT_KERNEL, KERNEL_PROFILES, QEMU_CPU_MODELS,
                                      HostProfile, VmType, cpu_signature)

#: ``--platform`` choices: the keys of harness.measure.platforms.PLATFORM_NAMES
#: (checked by tests/cli/test_startup.py), repeated so that ``--help`` does not
#: import the page planner and the IGVM model under it.
MEASURE_PLATFORMS = ("sev", "sev-es", "sev-snp")


def host_from_args(args: argparse.Namespace) -> HostProfile:
    if args.cpu_signature is not None:
        sig = args.cpu_signature
    else:
        model = args.vcpu_type
        if model not in QEMU_CPU_MODELS:
            raise HarnessError(f"unknown vCPU type {model!r}; known: {', '.join(QEMU_CPU_MODELS)} "
                               "(or give --cpu-signature)")
        sig = cpu_signature(*QEMU_CPU_MODELS[model])
    return HostProfile(kernel=args.kernel_profile, vm_type=VmType(args.vm_type), cpu_sig=sig,
                       host_cr4_mce=not args.no_host_cr4_mce,
                       supported_vmsa_features=args.supported_sev_features)


def _measure(args: argparse.Namespace) -> int:
    from harness.igvm.files import read
    from harness.measure import classic_cli, corim_cli

    data = read(args.file)
    if args.explain and not args.firmware and _is_igvm(data):
        return _explain_against_crate(args, data)
    corim = corim_cli.wanted(args)
    if classic_cli.handles(args, data):  # an OVMF image (classic -bios launch) or --explain
        return classic_cli.run(args, data, host_from_args(args))
    from harness.igvm.rules import IgvmFormatError
    from harness.igvm.walk import replay
    from harness.measure import launch  # the IGVM path only (start-up of `measure FW.fd`)

    # one pass over the headers: validated (format errors first) and measured
    digest = launch.LaunchDigest(args.platform, args.vcpus, policy=args.policy)
    notes: list[str] = []
    try:
        f = launch.walk(data, [digest], source=args.file)
    except IgvmFormatError as exc:
        if exc.rule != "unknown-header-type":
            raise
        f, notes = _without_corim(data, args.file)  # a second pass, for such files only
        digest = launch.LaunchDigest(args.platform, args.vcpus, policy=args.policy)
        replay(f, [digest.planner])
    if args.policy is not None and args.platform != "sev-snp" and args.policy >> 32:
        # target/i386/sev.c: sev-guest's "policy" is a uint32 (SNP's is 64-bit)
        raise HarnessError(f"--policy {args.policy:#x} does not fit the 32-bit "
                           f"{args.platform} guest policy")
    host = digest.host = host_from_args(args)
    pred = digest.result()
    pred.notes[:0] = notes
    out = pred.as_dict()
    if args.expect is not None:
        return _compare(f, args, host, pred)
    written = corim_cli.emit(args, pred.platform, pred.digest, data) if corim else []
    if args.json:
        import json  # only --json: not imported at start-up

        if corim:
            out["corim_outputs"] = written
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(f"{out['platform']} launch digest ({out['algorithm']}): {out['digest']}")
    print(f"  vcpus={out['vcpus']} policy={out['policy']} vm-type={out['vm_type']} "
          f"sev_features={out['sev_features']} kernel={out['kernel_profile']} "
          f"cpu-signature={out['cpu_signature']}")
    if out["vmsa_sources"]:
        print("  vmsas: " + ", ".join(f"cpu{i}={s}" for i, s in enumerate(out["vmsa_sources"])))
    if out["id_block_ld"]:
        state = "matches" if out["id_block_matches"] else "DOES NOT MATCH"
        print(f"  id block ld {out['id_block_ld']} {state} the prediction")
    for note in out["notes"]:
        print(f"  note: {note}")
    for line in written:
        print(line)
    return 0


def _without_corim(data, source: str):
    """A file the parser refused for a header type it does not handle: if
    those are CoRIM headers, the file is measured without them (they load no
    guest memory), saying so; else the parser's refusal stands."""
    from harness.corim.embed import load_measurable  # only for such files (start-up)

    f, headers = load_measurable(data, source)
    return f, [f"{len(headers)} CoRIM header(s) (0x104/0x105) left out: they load no guest memory; "
               "QEMU 10.2's igvm library refuses them (see `igvm-harness certify`)"]


def _is_igvm(data) -> bool:
    from harness.igvm.defs import IGVM_MAGIC

    return bytes(data[:4]) == IGVM_MAGIC.to_bytes(4, "little")


def _explain_against_crate(args: argparse.Namespace, data) -> int:
    """``--explain`` of an IGVM file without ``--firmware``: QEMU's launch beside the
    igvm crate's model of it (SEV-SNP: the crate's measurement module), step by step."""
    from harness.igvm.parser import parse
    from harness.measure import crate_model

    if args.platform != "sev-snp":
        raise HarnessError("--explain of an IGVM file compares with the igvm crate's SEV-SNP model "
                           "(--platform sev-snp), or with the classic launch of its OVMF "
                           "(--firmware FW.fd)")
    f = parse(data, source=args.file)
    x = crate_model.explain(f, args.vcpus, host_from_args(args), _oracle_digest(args.file))
    if args.json:
        import json

        json.dump(x, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(crate_model.render(x))
    return 0


def _oracle_digest(path: str) -> dict:
    """The crate's own digest (tools/igvm-oracle), or why it is absent."""
    from harness.reference import oracle

    binary, line = oracle.status()
    if binary is None:
        return {"absent": line}
    answer = oracle.snp_digest([path])[0]
    answer["version"] = (oracle.record() or {}).get("igvm", "")
    return answer


def _compare(f, args: argparse.Namespace, host: HostProfile, pred) -> int:
    """--expect: compare with an observed digest; on mismatch print the triage report."""
    from harness.measure import triage
    from harness.measure.launch import predict

    try:
        observed = bytes.fromhex(args.expect.strip())
    except ValueError:
        raise HarnessError("--expect takes the observed launch digest in hex") from None
    if len(observed) != len(pred.digest):
        raise HarnessError(f"--expect has {len(observed)} bytes; a {pred.as_dict()['algorithm']} digest has "
                           f"{len(pred.digest)}")
    if observed == pred.digest:
        print(f"{pred.as_dict()['platform']} launch digest matches: {pred.hexdigest}")
        return 0
    found = triage.search_alternatives(lambda h, n: predict(f, args.platform, n, h, pred.policy),
                                       host, args.vcpus, lambda d: d == observed)
    print(triage.report(pred, None, found))
    return 1


def add_host_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vm-type", choices=[VmType.LEGACY.value, VmType.INIT2.value], default="legacy",
                   help="SEV/SEV-ES VM creation: legacy (KVM_SEV_ES_INIT, QEMU 10.2's default) or init2 "
                        "(KVM_SEV_INIT2, legacy-vm-type=off); SNP always uses init2")
    p.add_argument("--kernel-profile", choices=sorted(KERNEL_PROFILES), default=DEFAULT_KERNEL,
                   help="host kernel behaviour for sev_features of legacy VMs (default: %(default)s)")
    p.add_argument("--vcpu-type", default=DEFAULT_CPU_MODEL,
                   help="QEMU -cpu model, for the CPU signature in RDX (default: %(default)s)")
    p.add_argument("--cpu-signature", type=_unsigned(32), default=None,
                   help="CPUID.1:EAX to use instead of --vcpu-type")
    p.add_argument("--supported-sev-features", type=_unsigned(64), default=None, metavar="MASK",
                   help="the host's KVM_X86_SEV_VMSA_FEATURES (refuse VMSAs asking for more)")
    p.add_argument("--no-host-cr4-mce", action="store_true",
                   help="the host runs without CR4.MCE (KVM ORs the host's MCE bit into CR4)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("measure", help="predict the SEV / SEV-ES / SEV-SNP launch digest of an IGVM file",
                              description="Predict the launch digest QEMU 10.2 + KVM make the AMD firmware "
                                          "compute for FILE.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--platform", required=True, choices=MEASURE_PLATFORMS)
    p.add_argument("--vcpus", type=_vcpus, default=1)
    p.add_argument("--policy", type=_unsigned(64), default=None,
                   help="guest policy (default: QEMU's, 0x1 SEV / 0x5 SEV-ES; SNP: the file's GUEST_POLICY)")
    add_host_arguments(p)
    p.add_argument("--expect", metavar="HEX", default=None,
                   help="observed launch digest (e.g. MEASUREMENT of an SNP report): exit 1 and print "
                        "a triage report when it differs")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    from harness.measure.classic_cli import add_arguments as add_classic_arguments
    add_classic_arguments(p)
    from harness.measure.corim_cli import add_arguments as add_corim_arguments
    add_corim_arguments(p)
    p.set_defaults(func=_measure)
