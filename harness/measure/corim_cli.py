"""``measure ... --corim OUT.cbor``: the Launch Measurement CoRIM of the predicted digest.

Kept apart from :mod:`harness.measure.commands` (as the classic launch is):
the CoRIM modules, cbor2 and pycose are imported only when ``--corim`` is
given.  The digest written is the harness's prediction of what QEMU's
launch makes the platform measure -- of the IGVM file, or of the classic
``-bios`` launch of an OVMF image -- never the digest the file's own
model (the igvm crate's, a build tool's) claims.
"""

from __future__ import annotations

import argparse
import os

from harness.errors import HarnessError
from harness.options import unsigned


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("reference values (Launch Measurement CoRIM, "
                             "tag:microsoft.com,2026:launch-measurement/v1)")
    g.add_argument("--corim", metavar="OUT.cbor", default=None,
                   help="write the CoRIM of the predicted digest (SEV-SNP)")
    g.add_argument("--svn", type=unsigned(64), default=1,
                   help="the SVN the CoRIM endorses when the digest matches (default: %(default)s)")
    g.add_argument("--sign", metavar="KEY.pem", default=None,
                   help="also write a COSE_Sign1 of the CoRIM (detached payload) to OUT.cose")
    g.add_argument("--signer", default="igvm-harness",
                   help="the signer named in the signature (CWT iss; default: %(default)s)")
    g.add_argument("--embed", metavar="OUT.igvm", default=None,
                   help="also write a copy of FILE carrying the CoRIM (and signature) in headers "
                        "0x104 / 0x105")
    g.add_argument("--optional", action="store_true",
                   help="with --embed: set the headers' optional bit (IGVM_VHT_OPTIONAL_BIT)")


def wanted(args: argparse.Namespace) -> bool:
    """Whether CoRIM output was asked for; options that need ``--corim`` without it are an error."""
    if args.corim is None:
        extra = [o for o, v in (("--sign", args.sign), ("--embed", args.embed),
                                ("--optional", args.optional)) if v]
        if extra:
            raise HarnessError(f"{', '.join(extra)} need --corim OUT.cbor")
        return False
    if args.platform != "sev-snp":
        raise HarnessError(f"--corim: the launch-measurement CoRIM profile has no {args.platform} "
                           "environment (it defines AMD/SEV-SNP, Intel/TDX and Microsoft/VBS)")
    if getattr(args, "explain", False) or getattr(args, "expect", None) is not None:
        raise HarnessError("--corim writes reference values: it does not go with --explain or --expect")
    return True


def signature_path(corim_path: str) -> str:
    root, ext = os.path.splitext(corim_path)
    return (root if ext == ".cbor" else corim_path) + ".cose"


def emit(args: argparse.Namespace, platform, digest: bytes, igvm_data=None) -> list[str]:
    """Write the CoRIM (and signature, and embedded copy) for ``digest``;
    returns the lines to print.  ``igvm_data``: the IGVM file, for ``--embed``."""
    from harness.corim import build, embed, sign
    from harness.outputs import write_all

    if args.embed and igvm_data is None:
        raise HarnessError("--embed needs an IGVM FILE (an OVMF image has no headers to carry it)")
    document = build.build(platform, digest, args.svn)
    signature = sign.sign(document, args.sign, args.signer) if args.sign else None
    outputs = [(args.corim, document)]
    if signature is not None:
        outputs.append((signature_path(args.corim), signature))
    if args.embed:
        outputs.append((args.embed, embed.attach(igvm_data, [(platform, document, signature)],
                                                 optional=args.optional)))
    write_all(outputs, prefix=".corim-")   # all or nothing
    lines = [f"CoRIM ({len(document)} bytes, SVN {args.svn}): {args.corim}"]
    if signature is not None:
        info = sign.read_signature(signature)
        lines.append(f"signature ({info.algorithm}, kid {info.kid}): {signature_path(args.corim)}")
    if args.embed:
        lines.append(f"IGVM file with the CoRIM in headers 0x104/0x105"
                     f"{' (optional bit set)' if args.optional else ''}: {args.embed}")
        lines.append("note: QEMU 10.2 does not load an IGVM file with CoRIM headers, with or "
                     "without the optional bit (its igvm library refuses the types; "
                     "`igvm-harness certify` gives the verdict for this QEMU)")
    return lines
