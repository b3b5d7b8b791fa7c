"""``igvm-harness measure FW.fd`` (the classic -bios launch) and ``measure --explain``.

Kept apart from :mod:`harness.measure.commands` so the IGVM path stays as it is:
``commands._measure`` hands over when FILE is an OVMF image or ``--explain`` is given.
"""

from __future__ import annotations

import argparse
import sys

from harness.errors import HarnessError


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``measure`` for OVMF images (FILE is told apart by content)."""
    p.add_argument("--explain", action="store_true",
                   help="compare with the classic -bios launch of the same OVMF, page range by page "
                        "range (FILE is an OVMF image: its IGVM wrap is compared; FILE is an IGVM "
                        "file: give the OVMF with --firmware); an IGVM file without --firmware: "
                        "QEMU's SEV-SNP launch beside the igvm crate's measurement model, each "
                        "difference with its QEMU source line and specification text")
    p.add_argument("--firmware", metavar="FW.fd", default=None,
                   help="the OVMF image an IGVM FILE was made from (for --explain)")
    p.add_argument("--ap-state", choices=("qemu-10", "qemu-9"), default="qemu-10",
                   help="classic launch: APs start with FCW=MXCSR=0 as QEMU >= 10.0 sets them "
                        "(sev_es_set_ap_context) or with the reset values as QEMU < 10.0 did "
                        "(default: %(default)s)")
    p.add_argument("--metadata-pages", choices=("zero", "unmeasured"), default="zero",
                   help="--explain of an OVMF image: how its IGVM wrap writes SNP_SEC_MEM pages")


def handles(args: argparse.Namespace, data) -> bool:
    if args.explain:
        return True
    from harness.igvm.defs import IGVM_MAGIC
    if bytes(data[:4]) == IGVM_MAGIC.to_bytes(4, "little"):
        return False  # an IGVM file: the OVMF reader is not needed (start-up time)
    from harness.igvm.ovmf import is_ovmf_file
    return is_ovmf_file(data)


def run(args: argparse.Namespace, data, host) -> int:
    from harness.igvm import ovmf
    from harness.measure.classic_ovmf import predict_classic

    if ovmf.is_ovmf_file(data):
        fw = ovmf.read(data, args.file)
        igvm_file = None
    else:
        if not args.firmware:
            raise HarnessError("--explain of an IGVM file needs the OVMF image it wraps: --firmware FW.fd")
        fw = ovmf.load(args.firmware)
        from harness.igvm.parser import parse  # the IGVM model: --explain of a wrap only
        igvm_file = parse(data, source=args.file)
    classic = predict_classic(fw, args.platform, args.vcpus, host, args.ap_state, steps=args.explain)
    if not args.explain:
        if args.expect is not None:
            return _expect(args, classic)
        if args.corim is not None:  # reference values of the classic launch
            from harness.measure import corim_cli
            written = corim_cli.emit(args, classic.platform, classic.digest)
            status = _print_classic(args, classic)
            if not args.json:
                print("\n".join(written))
            return status
        return _print_classic(args, classic)
    from harness.igvm.parser import parse
    from harness.measure import explain
    from harness.measure.launch import predict
    if igvm_file is None:
        from harness.igvm import wrap_ovmf
        what = f"wrap-ovmf --metadata-pages {args.metadata_pages}"
        igvm_file = parse(wrap_ovmf.wrap(fw, (args.platform,), args.vcpus, metadata_pages=args.metadata_pages,
                                         cpu_signature=host.cpu_sig))
    else:
        what = args.file
    pred = predict(igvm_file, args.platform, args.vcpus, host, args.policy)
    steps = explain.igvm_steps(igvm_file, args.platform, args.vcpus, pred.vmsas)
    x = explain.compare(classic, pred.digest, steps, pred.vmsas)
    chain = None
    if args.platform == "sev-snp":  # which code hashed the pages (C fold or pure Python)
        from harness.measure.measure_snp import chain_path_status
        chain = chain_path_status()
    if args.json:
        import json  # only --json (start-up)

        json.dump({"platform": args.platform, "vcpus": args.vcpus, "classic": x.classic_digest.hex(),
                   "snp_chain": chain,
                   "igvm": x.igvm_digest.hex(), "same": x.same,
                   "ranges": [{"gpa": f"{d.gpa:#x}", "end": f"{d.end:#x}", "pages": d.pages,
                               "classic": d.classic, "igvm": d.igvm, "label": d.label} for d in x.ranges],
                   "vmsas": [{"cpu": c, "fields": [{"field": n, "classic": a, "igvm": b} for n, a, b in f]}
                             for c, f in x.vmsas],
                   "first_order_difference": x.first_order_difference}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(explain.render(x, args.platform, args.vcpus, what))
        if chain:
            print(f"  {chain}")
    return 0


def _expect(args: argparse.Namespace, c) -> int:
    try:
        observed = bytes.fromhex(args.expect.strip())
    except ValueError:
        raise HarnessError("--expect takes the observed launch digest in hex") from None
    if len(observed) != len(c.digest):
        raise HarnessError(f"--expect has {len(observed)} bytes; this digest has {len(c.digest)}")
    if observed == c.digest:
        print(f"{args.platform} launch digest of -bios {args.file} matches: {c.hexdigest}")
        return 0
    print(f"{args.platform} launch digest of -bios {args.file} differs: predicted {c.hexdigest}, "
          f"observed {observed.hex()}")
    print("  check: --vcpus (= -smp), --vcpu-type (= -cpu), --vm-type (legacy-vm-type), --ap-state "
          "(QEMU older than 10.0: qemu-9), a -kernel launch (kernel hashes are not modelled)")
    return 1


def _print_classic(args: argparse.Namespace, c) -> int:
    algo = "sha384" if args.platform == "sev-snp" else "sha256"
    vm_type = "snp" if args.platform == "sev-snp" else c.host.vm_type.value
    if args.json:
        import json  # only --json (start-up)

        json.dump({"platform": args.platform, "launch": "classic", "digest": c.hexdigest, "algorithm": algo,
                   "vcpus": c.vcpus, "vm_type": vm_type, "sev_features": f"{c.sev_features:#x}",
                   "cpu_signature": f"{c.host.cpu_sig:#x}", "ap_state": c.ap_state.value,
                   "measured_steps": len(c.steps)}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(f"{args.platform} launch digest of -bios {args.file} ({algo}): {c.hexdigest}")
    print(f"  vcpus={c.vcpus} vm-type={vm_type} sev_features={c.sev_features:#x} "
          f"cpu-signature={c.host.cpu_sig:#x} ap-state={c.ap_state.value}")
    if c.vcpus > 1 and vm_type != "legacy" and c.ap_state.value == "qemu-10":
        print("  note: the APs' VMSAs hold FCW = MXCSR = 0, as QEMU >= 10.0 starts them "
              "(target/i386/sev.c: sev_es_set_ap_context); sev-snp-measure 0.0.13 assumes the reset "
              "values 0x37f / 0x1f80 (QEMU < 10.0): --ap-state qemu-9")
    if args.platform == "sev-es" and vm_type == "legacy":
        print("  note: legacy VM type (QEMU 10.2's default): KVM puts no FPU state into the VMSAs; "
              "sev-snp-measure's SEV-ES digest is that of --vm-type init2 (legacy-vm-type=off)")
    return 0
