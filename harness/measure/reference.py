"""Why a published reference digest is (not) what QEMU's launch measures.

A vendor's CoRIM states a launch digest; :func:`check` compares it with the
harness's prediction of QEMU's launch of the same file and, when they
differ, looks for the launch model that does produce it, then lists where
that model and QEMU's launch part ways, page range by page range (the
comparison of ``measure --explain``, :mod:`harness.measure.explain`):

* **the classic ``-bios`` launch** of the OVMF image the file carries (the
  firmware pages that end at 4 GiB, read back into an image): what
  sev-snp-measure and :mod:`harness.measure.classic_ovmf` compute for the
  firmware alone;
* **the igvm crate's model** (igvm 0.5 ``measurement::generate_snp_measurement``,
  what ``IgvmSerializer::add_corim`` embeds): directives in file order, for
  headers whose mask contains the platform's; PAGE_DATA as NORMAL (no data:
  the SHA-384 of a zero page), UNMEASURED, SECRETS or CPUID; shared pages
  skipped; each PARAMETER_INSERT one UNMEASURED page per 4 KiB of its area;
  each VP context the file's VMSA bytes as they are, at its place among the
  directives.  QEMU's IGVM path measures the VMSAs KVM builds from them, one
  per vCPU, after all pages (target/i386/sev.c), with the TSC fields cleared;
* **one input changed** (vCPU count, vCPU type, VM type, kernel profile,
  CR4.MCE: :func:`harness.measure.triage.alternatives`).

SEV-SNP only: the launch-measurement profile has no SEV / SEV-ES environment.
"""

from __future__ import annotations

import hashlib

from harness.errors import HarnessError
from harness.igvm import model as m
from harness.igvm.defs import PageDataFlags, PageDataType, PlatformType
from harness.measure import explain, triage
from harness.measure.classic_ovmf import ClassicPrediction, Step
from harness.measure.kvm_vmsa import HostProfile
from harness.measure.launch import Prediction, predict
from harness.measure.measure_snp import SnpLaunchDigest, SnpPageType
from harness.record import Factory, Record

PAGE_4K = 0x1000
_ZERO_HASH = hashlib.sha384(bytes(PAGE_4K)).digest()


class ReferenceCheck(Record):
    """The reference digest against QEMU's launch, and what explains a difference."""

    reference: bytes
    predicted: Prediction
    model: str | None = None               # the launch model that reproduces the reference
    explanation: object = None             # explain.Explanation, when page ranges were compared
    lines: list = Factory(list)            # the report

    @property
    def equal(self) -> bool:
        return self.reference == self.predicted.digest


def crate_model(f: m.IgvmFile, platform=PlatformType.SEV_SNP) -> tuple[bytes, list[Step], list[bytes]]:
    """(digest, steps, VMSAs) of the igvm crate 0.5's SNP launch model."""
    mask = f.mask_for(platform)
    if not mask:
        raise HarnessError(f"the file has no {PlatformType(platform).name} platform", 1)
    ld = SnpLaunchDigest()
    steps: list[Step] = []
    vmsas: list[bytes] = []
    areas: dict[int, int] = {}
    sha = hashlib.sha384
    for index, d in enumerate(f.directives):
        dmask = getattr(d, "compatibility_mask", None)
        if dmask is not None and dmask & mask != mask:
            continue
        label = f"directive {index}"
        if isinstance(d, m.ParameterArea):
            areas[d.parameter_area_index] = d.number_of_bytes
        elif isinstance(d, m.PageData):
            if d.flags & PageDataFlags.SHARED:
                continue
            if d.flags & PageDataFlags.IS_2MB_PAGE:
                raise HarnessError(f"{label}: the igvm crate measures no 2 MiB page "
                                   "(MeasurementError::UnsupportedPageSize)", 1)
            if d.data_type == PageDataType.SECRETS:
                kind, contents = SnpPageType.SECRETS, None
            elif d.data_type in (PageDataType.CPUID_DATA, PageDataType.CPUID_XF):
                kind, contents = SnpPageType.CPUID, None
            elif d.flags & PageDataFlags.UNMEASURED:
                kind, contents = SnpPageType.UNMEASURED, None
            else:
                data = bytes(d.data or b"")
                kind, contents = SnpPageType.NORMAL, (sha(data.ljust(PAGE_4K, b"\0")).digest()
                                                      if data else _ZERO_HASH)
            ld.update(kind, d.gpa, contents or bytes(48))
            steps.append(Step(kind.name.lower(), d.gpa, PAGE_4K, label, contents or b""))
        elif isinstance(d, m.ParameterInsert):
            size = areas.get(d.parameter_area_index)
            if size is None:
                raise HarnessError(f"{label}: parameter area {d.parameter_area_index} undefined", 1)
            for gpa in range(d.gpa, d.gpa + size, PAGE_4K):
                ld.update(SnpPageType.UNMEASURED, gpa)
                steps.append(Step("unmeasured", gpa, PAGE_4K, "parameter area"))
        elif isinstance(d, m.VpContext):
            page = bytes(d.data or b"").ljust(PAGE_4K, b"\0")[:PAGE_4K]
            contents = sha(page).digest()
            ld.update(SnpPageType.VMSA, d.gpa, contents)
            steps.append(Step("vmsa", d.gpa, PAGE_4K, f"vmsa vp{d.vp_index}", contents))
            vmsas.append(page)
    return ld.ld, steps, vmsas


def _firmware_image(f: m.IgvmFile, mask: int):
    """The OVMF image a wrap carries (its pages ending at 4 GiB), or None."""
    from harness.igvm import ovmf

    pages = {}
    for d in f.iter_page_data(mask):
        if d.data_type == PageDataType.NORMAL and d.gpa < 1 << 32 and not d.flags & PageDataFlags.IS_2MB_PAGE:
            pages[d.gpa] = d
    top, gpa = 1 << 32, (1 << 32) - PAGE_4K
    while gpa in pages and gpa >= (1 << 32) - (16 << 20):  # OVMF images are at most 16 MiB here
        gpa -= PAGE_4K
    start = gpa + PAGE_4K
    if start == top:
        return None
    blob = bytearray(top - start)
    for g in range(start, top, PAGE_4K):
        data = bytes(pages[g].data or b"")
        blob[g - start:g - start + len(data)] = data
    if not ovmf.is_ovmf_file(blob):
        return None
    try:
        return ovmf.read(bytes(blob), "the firmware in the file")
    except HarnessError:
        return None


def check(f: m.IgvmFile, reference: bytes, vcpus: int, host: HostProfile | None = None,
          platform=PlatformType.SEV_SNP) -> ReferenceCheck:
    """Compare ``reference`` with QEMU's launch of ``f``; explain a difference."""
    host = host or HostProfile()
    pred = predict(f, platform, vcpus, host)
    res = ReferenceCheck(bytes(reference), pred)
    if res.equal:
        res.lines = [f"the reference digest is QEMU's launch digest ({pred.hexdigest}, "
                     f"{vcpus} vCPU(s))"]
        return res
    res.lines = [f"reference digest:   {reference.hex()}",
                 f"QEMU launch digest: {pred.hexdigest} ({vcpus} vCPU(s), QEMU 10.2 model)"]
    steps_qemu = explain.igvm_steps(f, platform, vcpus, pred.vmsas)
    mask = f.mask_for(platform)
    fw = _firmware_image(f, mask)
    if fw is not None:
        from harness.measure.classic_ovmf import predict_classic
        try:
            classic = predict_classic(fw, platform, vcpus, host, steps=True)
        except HarnessError:
            classic = None
        if classic is not None and classic.digest == res.reference:
            res.model = "the classic -bios launch of the OVMF image in this file"
            return _ranges(res, classic, steps_qemu, "classic -bios")
    try:
        digest, steps, vmsas = crate_model(f, platform)
    except HarnessError:
        digest = None
    if digest == res.reference:
        res.model = "the igvm crate 0.5's launch model (IgvmSerializer / generate_snp_measurement)"
        crate = ClassicPrediction(PlatformType(platform), digest, vcpus, host, 0, "qemu-10",
                                  vmsas=vmsas, steps=steps)
        return _ranges(res, crate, steps_qemu, "igvm crate")
    found = triage.search_alternatives(lambda h, n: predict(f, platform, n, h), host, vcpus,
                                       lambda d: d == res.reference)
    if found:
        name, alt = found[0]
        res.model = f"QEMU's launch with {name}"
        res.lines.append(f"reproduced by QEMU's launch with {name}: the reference was computed for "
                         "another launch configuration")
        for i, (a, b) in enumerate(zip(pred.vmsas, alt.vmsas)):
            if a != b:
                res.lines += ["  " + x for x in triage.vmsa_diff_lines(a, b, f"vCPU {i}")][:8]
        return res
    res.lines.append("no model reproduces the reference digest (classic -bios launch of the "
                     "firmware, the igvm crate's model, one launch input changed): the file "
                     "measured is not the file the reference was computed for, or another "
                     "launch configuration was assumed (`igvm-harness measure --expect` lists the "
                     "inputs)")
    return res


def _ranges(res: ReferenceCheck, other: ClassicPrediction, steps_qemu: list[Step],
            label: str) -> ReferenceCheck:
    x = explain.compare(other, res.predicted.digest, steps_qemu, res.predicted.vmsas)
    res.explanation = x
    res.lines.append(f"reproduced by {res.model}; where QEMU's IGVM launch differs "
                     f"({label} -> QEMU):")
    if not x.ranges:
        res.lines.append("  no page differs")
    for d in x.ranges[:32]:
        res.lines.append(f"  {d.gpa:#010x}-{d.end - 1:#010x} {d.pages:5d} page(s)  {d.label:<24} "
                         f"{d.classic} -> {d.igvm}")
    if len(x.ranges) > 32:
        res.lines.append(f"  ... {len(x.ranges) - 32} more range(s)")
    for cpu, fields in x.vmsas:
        text = ", ".join(f"{n} {a:#x} -> {b:#x}" for n, a, b in fields[:6])
        res.lines.append(f"  VMSA of vCPU {cpu}: {text}")
    if x.first_order_difference is not None:
        res.lines.append(f"  order of the pages both measure: differs from common page "
                         f"{x.first_order_difference} on")
    if any(d.classic == "ZERO" for d in x.ranges):
        res.lines.append("  (QEMU's IGVM path has no SNP page type ZERO: a page without data is "
                         "measured as NORMAL zeros, target/i386/sev.c: cgs_set_guest_state)")
    return res


__all__ = ["ReferenceCheck", "check", "crate_model"]
