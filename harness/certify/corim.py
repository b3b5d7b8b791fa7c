"""The certification checks of an image that carries its reference values (CoRIM).

``corim.headers``: the CoRIM headers (0x104 / 0x105) read as the igvm
crate's ``corim`` feature reads them, each document checked against the
Launch Measurement profile and each signature verified with the user's key
(``--corim-key``) -- :mod:`harness.corim.embed`.

``P.corim``: the digest the image's CoRIM states for platform P against the
harness's prediction of QEMU's launch of the same file (its CoRIM headers
left out: they load no guest memory); a difference fails, naming both
digests and what explains it -- the launch model that reproduces the
reference and the page ranges where it parts from QEMU's
(:mod:`harness.measure.reference`).  Whether QEMU loads such an image at
all is the matrix's verdict on the header types, reported by the
``P.directives`` check (cases ``corim-*`` of harness/expect/data/cases.toml).
"""

from __future__ import annotations

from harness.certify.model import Outcome, Target
from harness.report.model import Evidence, Measurement


def findings(target: Target):
    """The image's CoRIM findings, read once per target."""
    if target.corim is None:
        from harness.corim.embed import read
        target.corim = read(target.model, target.corim_key)
    return target.corim


def platforms_with_corim(target: Target) -> list[str]:
    """The harness platform names whose CoRIM the image carries."""
    from harness.certify.model import QEMU_PLATFORMS
    return [QEMU_PLATFORMS[p.platform] for p in findings(target).platforms
            if p.platform in QEMU_PLATFORMS]


def headers(target: Target, _platform: str | None) -> Outcome:
    found = findings(target)
    ev = Evidence(details={"corim": found.as_dict(), "lines": found.lines()})
    bad = found.problems + [f"{p.name}: {p.error}" for p in found.platforms if p.error] + \
        [f"{p.name} signature: {p.signature_error}" for p in found.platforms if p.signature_error]
    if bad:
        return Outcome("fail", f"{len(bad)} problem(s); first: {bad[0]}", ev)
    parts = []
    for p in found.platforms:
        sig = ("signature verified" if p.signature_info is not None and p.signature_info.verified
               else "signature not verified (no --corim-key)" if p.signature is not None
               else "unsigned")
        parts.append(f"{p.name}: {p.corim.vendor}/{p.corim.model} SVN {p.corim.svn}, {sig}")
    return Outcome("pass", "CoRIM headers well-formed (launch-measurement profile): "
                   + "; ".join(parts), ev)


def reference(target: Target, platform: str | None) -> Outcome:
    """The image's reference digest for ``platform`` vs QEMU's launch."""
    from harness.corim.embed import without_corim
    from harness.errors import HarnessError
    from harness.measure import reference as ref

    assert platform
    entry = next((p for p in findings(target).platforms if p.name == platform), None)
    if entry is None or entry.corim is None:
        why = entry.error if entry is not None else "no CoRIM for this platform"
        return Outcome("fail", f"no reference digest to compare: {why}")
    stated = entry.corim.digest
    try:
        res = ref.check(without_corim(target.model), stated, target.vcpus)
    except HarnessError as exc:
        return Outcome("fail", f"no prediction of QEMU's launch to compare with: {exc}")
    meas = Measurement(platform=platform, algorithm=entry.corim.hash_name.replace("-", ""),
                       digest=res.predicted.hexdigest, inputs={"vcpus": target.vcpus})
    details = {"reference": stated.hex(), "predicted": res.predicted.hexdigest,
               "svn": entry.corim.svn, "model": res.model, "explanation": res.lines}
    if res.explanation is not None:
        details["ranges"] = [{"gpa": f"{d.gpa:#x}", "end": f"{d.end:#x}", "pages": d.pages,
                              "reference_model": d.classic, "qemu": d.igvm, "label": d.label}
                             for d in res.explanation.ranges]
    ev = Evidence(measurements=[meas], details=details)
    if res.equal:
        return Outcome("pass", f"the CoRIM's {entry.corim.hash_name} digest "
                               f"{stated.hex()[:16]}... (SVN {entry.corim.svn}) is QEMU's launch "
                               f"digest with {target.vcpus} vCPU(s)", ev)
    why = f"reproduced by {res.model}" if res.model else "no launch model reproduces it"
    if res.explanation is not None:
        x = res.explanation
        pages = sum(d.pages for d in x.ranges)
        shown = "; ".join(f"{d.gpa:#x}-{d.end - 1:#x} {d.classic} -> {d.igvm}" for d in x.ranges[:3])
        why += (f"; {len(x.ranges)} page range(s), {pages} page(s) differ" + (f": {shown}" if shown
                else "") + ("; ..." if len(x.ranges) > 3 else ""))
        if x.vmsas:
            why += "; VMSA fields differ: " + ", ".join(
                f"vCPU {cpu} {n}" for cpu, fields in x.vmsas for n, _a, _b in fields[:4])
    return Outcome("fail", f"the CoRIM states {stated.hex()}, QEMU's launch measures "
                           f"{res.predicted.hexdigest} ({target.vcpus} vCPU(s)); {why}", ev)
