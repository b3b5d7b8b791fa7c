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
    return out


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
