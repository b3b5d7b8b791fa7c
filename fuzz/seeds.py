"""The seed corpus: valid files from the builder and every mutator's output.

Each base file (a few platforms and header kinds) goes through every
single-rule mutator (``harness.igvm.mutate.MUTATORS``), the named faults
(``NAMED_MUTATORS``) and the generic damage (``EXTRA_MUTATORS``), so the
fuzzers start next to every rule's edge.  Small versions of issue 13's
inputs (huge parameter areas, many relocation regions, many bad headers)
are added.  Written on demand, never committed.

    python -m fuzz.seeds DIR
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import KVM_VMSA_GPA, PlatformType
from harness.igvm.mutate import EXTRA_MUTATORS, MUTATORS, NAMED_MUTATORS, MutationError


def _bases() -> dict[str, bytes]:
    out = {}
    b = IgvmBuilder()
    b.platform(PlatformType.SEV_SNP)
    b.page(0x1000, b"\xCC" * 16)
    out["snp-one-page"] = b.build()

    b = IgvmBuilder()
    b.platform(PlatformType.NATIVE)
    b.platform(PlatformType.SEV)
    b.platform(PlatformType.SEV_ES)
    b.guest_policy(0x30000)
    b.pages(0x100000, bytes(range(256)) * 32)
    b.zero_pages(0x200000, 2)
    b.page(0x400000, None, large=True)
    idx = b.parameter_area(0x1000)
    b.vp_count(idx)
    b.memory_map(idx, 16)
    b.parameter_insert(0x300000, idx)
    b.required_memory(0x500000, 0x1000)
    out["mixed"] = b.build()

    b = IgvmBuilder(revision=2)
    b.platform(PlatformType.NATIVE)
    out["native-v2-empty"] = b.build()

    b = IgvmBuilder()
    b.platform(PlatformType.SEV_SNP)
    b.vp_context(KVM_VMSA_GPA, bytes(4096))
    b.snp_id_block()
    out["snp-vmsa"] = b.build()
    out.update(_corim_bases(out["snp-one-page"]))
    return out


def _corim_bases(base: bytes) -> dict[str, bytes]:
    """Files carrying CoRIM headers (harness.corim), and CoRIMs with damaged CBOR."""
    import hashlib as _h

    from harness.corim import build, embed, sign
    from cryptography.hazmat.primitives.asymmetric import ec

    doc = build.build(PlatformType.SEV_SNP, _h.sha384(b"seed").digest(), 1)
    sig = sign.sign(doc, ec.derive_private_key(7, ec.SECP256R1()), "seed")
    out = {"snp-corim": embed.attach(base, [(PlatformType.SEV_SNP, doc, sig)]),
           "snp-corim-optional": embed.attach(base, [(PlatformType.SEV_SNP, doc, sig)], optional=True)}
    for name, damaged in (("truncated", doc[:-7]), ("flipped", doc[:40] + bytes([doc[40] ^ 0x20]) + doc[41:]),
                          ("deep", b"\x81" * 48 + doc)):
        out[f"snp-corim-{name}"] = embed.attach(base, [(PlatformType.SEV_SNP, damaged, None)])
    return out


def _corim_raw() -> dict[str, bytes]:
    """A CoRIM and a COSE_Sign1 on their own (the target also reads the input as either)."""
    import hashlib as _h

    from cryptography.hazmat.primitives.asymmetric import ec
    from harness.corim import build, sign

    doc = build.build(PlatformType.SEV_SNP, _h.sha384(b"seed").digest(), 1)
    return {"corim-document": doc,
            "corim-signature": sign.sign(doc, ec.derive_private_key(7, ec.SECP256R1()), "seed")}


def _hostile() -> dict[str, bytes]:
    from tests.untrusted import hostile
    return {"parameter-area-2^62": hostile.parameter_area(1 << 62),
            "parameter-area-2^40": hostile.parameter_area(1 << 40),
            "relocation-regions-64": hostile.relocation_regions(64, overlap_last=True),
            "bad-headers-512": hostile.bad_headers(512)}


def seeds() -> dict[str, bytes]:
    """name -> bytes, every mutator's output on every base (inapplicable ones skipped)."""
    out = {}
    for bname, base in _bases().items():
        out[bname] = base
        table = {**MUTATORS, **EXTRA_MUTATORS,
                 **{n: fn for n, (_, fn) in NAMED_MUTATORS.items()}}
        for mname, mutate in table.items():
            try:
                out[f"{bname}+{mname}"] = mutate(base)
            except MutationError:
                continue
    out.update(_corim_raw())
    try:
        out.update(_hostile())
    except ImportError:  # outside a checkout with tests/
        pass
    return out


def write(directory: str | Path) -> int:
    """Write the corpus into ``directory`` (content-named, as libFuzzer does)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    n = 0
    for data in seeds().values():
        (d / hashlib.sha1(data).hexdigest()).write_bytes(data)
        n += 1
    return n


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m fuzz.seeds DIR")
    print(f"{write(sys.argv[1])} seed files in {sys.argv[1]}")
