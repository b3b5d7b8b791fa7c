"""Why an IGVM file's launch digest differs from the classic ``-bios`` launch of the same OVMF.

Both launches are turned into the same list of measured steps (one per 4 KiB
page, then one per VMSA) and compared page by page: a page measured with a
different SNP page type or different contents, a page only one launch
measures, a VMSA that differs (field by field), and the first place where
the order of the common pages differs (the SNP digest is a chain, so order
matters; the SEV digest hashes the measured bytes in order).

The IGVM side replays QEMU 10.2's IGVM path (:func:`harness.measure.pages.plan_launch`
and the VMSAs of :func:`harness.measure.launch.predict`); the classic side is
:mod:`harness.measure.classic_ovmf`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from harness.igvm import model as m
from harness.igvm.defs import PlatformType
from harness.measure import kvm_vmsa
from harness.measure.classic_ovmf import ClassicPrediction, Step
from harness.measure.measure_snp import VMSA_GPA, VMSA_TSC_FIELDS
from harness.measure.pages import Kind, plan_launch, platform_type

PAGE_4K = 0x1000
_ZERO = bytes(PAGE_4K)

#: How the IGVM path measures each region kind on SNP (target/i386/sev.c: cgs_set_guest_state):
#: ZERO goes through launch_update_data, i.e. a NORMAL page of zeros.
_SNP_KIND = {Kind.NORMAL: "normal", Kind.ZERO: "normal", Kind.UNMEASURED: "unmeasured",
             Kind.SECRETS: "secrets", Kind.CPUID: "cpuid"}


def _units(u):
    """(gpa, 4 KiB bytes or None) for every 4 KiB unit of an update (2 MiB pages split)."""
    per = u.page_size // PAGE_4K
    for i, page in enumerate(u.pages):
        base = u.gpa + i * u.page_size
        for j in range(per):
            if page is None:
                yield base + j * PAGE_4K, None
                continue
            chunk = bytes(page[j * PAGE_4K:(j + 1) * PAGE_4K])
            yield base + j * PAGE_4K, chunk.ljust(PAGE_4K, b"\0") if chunk else None


def igvm_steps(f: m.IgvmFile, platform, vcpus: int, vmsas: list[bytes]) -> list[Step]:
    """The measured steps of an IGVM launch (``vmsas``: the measured VMSA pages, in CPU order)."""
    ptype = platform_type(platform)
    snp = ptype == PlatformType.SEV_SNP
    sha = hashlib.sha384 if snp else hashlib.sha256
    zero_hash = sha(_ZERO).digest()
    steps: list[Step] = []
    for u in plan_launch(f, ptype, vcpus).updates:
        label = "parameter area" if u.source == "parameter_insert" else f"directive {u.first_index}"
        if u.kind in (Kind.NORMAL, Kind.ZERO):
            for gpa, chunk in _units(u):
                steps.append(Step("normal", gpa, PAGE_4K, label,
                                  zero_hash if chunk is None else sha(chunk).digest()))
        elif snp:
            for gpa, _ in _units(u):
                steps.append(Step(_SNP_KIND[u.kind], gpa, PAGE_4K, label))
    for cpu, page in enumerate(vmsas):
        steps.append(Step("vmsa", VMSA_GPA, PAGE_4K, f"vmsa cpu{cpu}", _vmsa_hash(page, snp)))
    return steps


def _vmsa_hash(page: bytes, snp: bool) -> bytes:
    if not snp:
        return hashlib.sha256(page).digest()
    masked = bytearray(page)
    lo, hi = VMSA_TSC_FIELDS
    masked[lo:hi] = bytes(hi - lo)
    return hashlib.sha384(masked).digest()


@dataclass(frozen=True)
class Difference:
    gpa: int
    end: int
    classic: str   # measured as, classically ("absent" if not measured there)
    igvm: str
    label: str

    @property
    def pages(self) -> int:
        return (self.end - self.gpa) // PAGE_4K


@dataclass
class Explanation:
    classic_digest: bytes
    igvm_digest: bytes
    ranges: list[Difference]
    vmsas: list[tuple[int, list[tuple[str, int, int]]]]  # cpu, field diffs (name, classic, igvm)
    first_order_difference: int | None  # index into the common pages, None = same order

    @property
    def same(self) -> bool:
        return self.classic_digest == self.igvm_digest


def _describe(s: Step | None) -> str:
    if s is None:
        return "absent"
    return s.kind.upper() + ("" if s.kind != "normal" else f" {s.contents[:6].hex()}")


def compare(classic: ClassicPrediction, igvm_digest: bytes, steps_igvm: list[Step],
            vmsas_igvm: list[bytes]) -> Explanation:
    pages_c = {s.gpa: s for s in classic.steps if s.kind != "vmsa"}
    pages_i = {s.gpa: s for s in steps_igvm if s.kind != "vmsa"}
    ranges: list[Difference] = []
    for gpa in sorted(set(pages_c) | set(pages_i)):
        c, i = pages_c.get(gpa), pages_i.get(gpa)
        if c is not None and i is not None and (c.kind, c.contents) == (i.kind, i.contents):
            continue
        a, b = _describe(c), _describe(i)
        if c is not None and i is not None and c.kind == i.kind == "normal":
            a, b = "NORMAL (other contents)", "NORMAL (other contents)"
        elif i is not None and i.kind == "normal" and i.contents in _ZERO_HASHES:
            b = "NORMAL (zeros)"
        label = (c.source if c is not None else i.source)
        if i is not None and i.source == "parameter area":
            label += " / IGVM parameter area"
        prev = ranges[-1] if ranges else None
        if prev and prev.end == gpa and (prev.classic, prev.igvm, prev.label) == (a, b, label):
            ranges[-1] = Difference(prev.gpa, gpa + PAGE_4K, a, b, label)
        else:
            ranges.append(Difference(gpa, gpa + PAGE_4K, a, b, label))
    common = [g for g in (s.gpa for s in classic.steps if s.kind != "vmsa") if g in pages_i]
    order_i = [s.gpa for s in steps_igvm if s.kind != "vmsa" and s.gpa in pages_c]
    first = next((k for k, (x, y) in enumerate(zip(common, order_i)) if x != y), None)
    vm: list[tuple[int, list]] = []
    for cpu in range(max(len(classic.vmsas), len(vmsas_igvm))):
        a = classic.vmsas[cpu] if cpu < len(classic.vmsas) else None
        b = vmsas_igvm[cpu] if cpu < len(vmsas_igvm) else None
        if a is None or b is None:
            vm.append((cpu, [("present", int(a is not None), int(b is not None))]))
        elif a != b:
            vm.append((cpu, kvm_vmsa.diff_vmsa(a, b)))
    return Explanation(classic.digest, igvm_digest, ranges, vm, first)


_AP_FPU = frozenset({"x87_fcw", "mxcsr"})
_ZERO_HASHES = frozenset({hashlib.sha384(_ZERO).digest(), hashlib.sha256(_ZERO).digest()})


def render(x: Explanation, platform: str, vcpus: int, what_igvm: str) -> str:
    out = [f"classic -bios launch ({platform}, {vcpus} vCPU(s)): {x.classic_digest.hex()}",
           f"IGVM launch ({what_igvm}):{' ' * 3}{x.igvm_digest.hex()}"]
    if x.same:
        out.append("the digests are equal")
        return "\n".join(out)
    out.append("differences, page range by page range (classic -> IGVM):")
    if not x.ranges:
        out.append("  no page differs")
    for d in x.ranges:
        out.append(f"  {d.gpa:#010x}-{d.end - 1:#010x} {d.pages:5d} page(s)  {d.label:<36} "
                   f"{d.classic} -> {d.igvm}")
    for cpu, fields in x.vmsas:
        text = ", ".join(f"{n} {a:#x} -> {b:#x}" for n, a, b in fields[:8])
        out.append(f"  VMSA of vCPU {cpu}: {text}")
    if x.vmsas and all({n for n, _, _ in f} <= _AP_FPU for _, f in x.vmsas):
        out.append("  (classic APs start with FCW = MXCSR = 0: QEMU >= 10.0 builds their context in "
                   "sev_es_set_ap_context / initialize_vmsa; the IGVM VMSAs carry the reset values)")
    if x.first_order_difference is None:
        out.append("order of the pages both launches measure: the same")
    else:
        out.append(f"order of the pages both launches measure: differs from common page "
                   f"{x.first_order_difference} on")
    if platform == "sev-snp" and any(d.classic == "ZERO" for d in x.ranges):
        out.append("  (QEMU 10.2's IGVM path cannot ask for SNP page type ZERO: a page without data goes "
                   "through launch_update_data as NORMAL zeros, target/i386/sev.c: cgs_set_guest_state)")
    return "\n".join(out)


__all__ = ["Difference", "Explanation", "compare", "igvm_steps", "render"]
