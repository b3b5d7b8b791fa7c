"""The igvm crate's SEV-SNP launch digest beside QEMU's, step by step, and why they differ.

igvm 0.5 (microsoft/igvm, crates.io) computes an SNP launch digest from the
file alone (``measurement::generate_snp_measurement``): the directives in
file order, each measured page a SNP_LAUNCH_UPDATE PAGE_INFO (SEV-SNP
Firmware ABI, SNP_LAUNCH_UPDATE), the file's VMSAs where the file puts
them.  QEMU 10.2 + KVM launch the same file differently in a few named ways
(:data:`DIFFERENCES`, each with the QEMU source line and the specification
text).  This module

* replays the crate's model with the harness's own parser and SHA-384
  chain (:func:`crate_steps`, :func:`crate_digest`): equal to the crate's
  own digest (tools/igvm-oracle; tests/reference/test_snp_digest.py), so the
  harness's page reading agrees with the reference implementation's;
* lists QEMU's launch as steps (:func:`qemu_steps`, the plan of
  :mod:`harness.measure.pages` and the VMSAs of :func:`harness.measure.launch.predict`);
* attributes every step on which the two differ to one entry of
  :data:`DIFFERENCES` (:func:`compare`), leaving nothing unexplained.

``igvm-harness measure FILE --platform sev-snp --explain`` prints it.
"""

from __future__ import annotations

import hashlib
from collections import Counter

from harness.errors import HarnessError
from harness.igvm import model as m
from harness.igvm.defs import PageDataFlags, PageDataType, PlatformType
from harness.measure.measure_snp import SnpLaunchDigest, SnpPageType, VMSA_GPA
from harness.igvm.limits import MAX_PARAMETER_AREA_BYTES
from harness.record import Factory, Record, fields

PAGE_4K = 0x1000
PAGE_2M = 0x200000
_ZERO48 = bytes(48)
_ZERO_PAGE_HASH = hashlib.sha384(bytes(PAGE_4K)).digest()
#: The crate's VMSA / page data limit: ``measure_page`` refuses data longer than 4 KiB.
CRATE_PAGE_LIMIT = PAGE_4K
#: page_data flag the crate reads (igvm_defs IgvmPageDataFlags bit 2, ``shared``).
SHARED = 0x4


class Difference(Record):
    """One way QEMU's launch of a file differs from the crate's model of it."""

    id: str
    title: str
    crate: str        # what igvm 0.5 generate_snp_measurement does
    qemu: str         # what QEMU 10.2 + KVM do
    qemu_source: str  # file:line in QEMU 10.2.2 (and KVM where it measures)
    spec: str         # the specification text that decides (or "none")

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in fields(self)}


#: As data: the QEMU lines are those of the Debian qemu 10.2.2 source the
#: harness builds; crate lines are igvm-0.5.0/src/measurement/snp.rs.
DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        "vmsa", "VMSA pages",
        "measures each SNP VP context of the file, in file order, as a VMSA page at the "
        "directive's GPA with the file's 4 KiB (snp.rs: IgvmDirectiveHeader::SnpVpContext)",
        "hands the VMSA to KVM as CPU state (backends/igvm.c:446 set_guest_state "
        "CGS_PAGE_TYPE_VMSA -> target/i386/sev.c:2552 sev_set_cpu_context); KVM builds one "
        "VMSA per vCPU (-smp, APs without a context from reset state) and measures them after "
        "every page, at GPA 0xFFFFFFFFF000, GUEST_TSC_SCALE/OFFSET zeroed (Linux "
        "arch/x86/kvm/svm/sev.c snp_launch_update_vmsa)",
        "backends/igvm.c:446; target/i386/sev.c:2552",
        "SEV-SNP Firmware ABI, SNP_LAUNCH_UPDATE (PAGE_TYPE_VMSA); the IGVM format leaves where "
        "a VMSA is measured to the loader (igvm_defs IGVM_VHS_VP_CONTEXT.gpa: 'the GPA to place "
        "the VMSA structure at')"),
    Difference(
        "order", "parameter inserts before the pending page run",
        "measures every directive when it is read (file order)",
        "coalesces PAGE_DATA into regions and submits a region only when a page that does not "
        "continue it arrives or at the end (backends/igvm.c:363 qigvm_process_mem_page); a "
        "PARAMETER_INSERT is applied at once (backends/igvm.c:514), i.e. before the run of "
        "pages that precedes it in the file",
        "backends/igvm.c:363, backends/igvm.c:514",
        "IGVM, igvm_defs IGVM_VHS_PARAMETER_INSERT.gpa: 'this parameter area is imported as a "
        "set of unmeasured pages when this structure is encountered by the loader' (QEMU "
        "deviates)"),
    Difference(
        "shared", "pages with the shared flag",
        "leaves them out of the digest (snp.rs: `if flags.shared() { continue; }`)",
        "never reads the flag: a shared page is measured as a private one (backends/igvm.c:239 "
        "qigvm_type_to_cgs_type takes only `unmeasured`)",
        "backends/igvm.c:239, backends/igvm.c:345",
        "IGVM, igvm_defs IgvmPageDataFlags.shared: 'imported as assigned but host visible ... "
        "not part of the launch measurement' (QEMU deviates)"),
    Difference(
        "large-page", "2 MiB pages",
        "measures a 2 MiB page as one 4 KiB unit at its GPA (file data longer than 4 KiB is "
        "refused: MeasurementError::UnsupportedPageSize)",
        "measures 512 pages of 4 KiB (backends/igvm.c:298 page_size 0x200000, one "
        "SNP_LAUNCH_UPDATE over the region)",
        "backends/igvm.c:298",
        "SEV-SNP Firmware ABI, SNP_LAUNCH_UPDATE: the firmware measures 4 KiB pages (PAGE_INFO "
        "per page)"),
    Difference(
        "policy", "no GUEST_POLICY for the SNP platform",
        "refuses to measure (MeasurementError::MissingGuestPolicy)",
        "uses sev-snp-guest's policy (default 0x30000, target/i386/sev.c:191); the policy is "
        "not part of the digest",
        "target/i386/sev.c:191",
        "SEV-SNP Firmware ABI, SNP_LAUNCH_START (POLICY is not in the PAGE_INFO chain)"),
)
BY_ID = {d.id: d for d in DIFFERENCES}
#: Where the two agree although the specification offers another way, stated so a reader
#: does not look for a difference there.
AGREEMENTS = (
    "a page without file data is a NORMAL page of zeros in both (crate: empty data -> "
    "SHA-384 of a zero page; QEMU: backends/igvm.c:247 CGS_PAGE_TYPE_ZERO -> "
    "target/i386/sev.c:2536 launch_update_data -> sev.c:1446 sev_snp_launch_update_data, "
    "KVM_SEV_SNP_PAGE_TYPE_NORMAL); the firmware's PAGE_TYPE_ZERO is used by neither, as the "
    "IGVM format asks (igvm_defs IGVM_VHS_PAGE_DATA.file_offset: 'treat this page ... as a "
    "normal private page with zeros as contents')",
    "parameter areas are UNMEASURED pages over the area's size in both "
    "(snp.rs ParameterInsert; backends/igvm.c:514 CGS_PAGE_TYPE_UNMEASURED)",
)


class Step(Record):
    """One PAGE_INFO of the chain."""

    page_type: int
    gpa: int
    contents: bytes
    directive: int           # index in the directive section (-1: KVM's VMSA of a vCPU)
    tags: frozenset = frozenset()

    @property
    def key(self) -> tuple:
        return (self.page_type, self.gpa, self.contents)


def _snp_mask(f: m.IgvmFile) -> int:
    sp = f.platform(PlatformType.SEV_SNP)
    if sp is None or not sp.compatibility_mask:
        raise HarnessError("the file has no SEV-SNP platform header", 1)
    return sp.compatibility_mask


def _page_contents(data) -> bytes:
    if not data:
        return _ZERO_PAGE_HASH
    data = bytes(data)
    if len(data) > CRATE_PAGE_LIMIT:
        raise HarnessError(f"page data of {len(data)} bytes: the crate refuses it "
                           "(MeasurementError::UnsupportedPageSize)", 1)
    return hashlib.sha384(data.ljust(PAGE_4K, b"\0")).digest()


def crate_steps(f: m.IgvmFile) -> list[Step]:
    """igvm 0.5's ``generate_snp_measurement`` as steps, from the harness's parsed file.

    Raises HarnessError where the crate returns a MeasurementError.
    """
    mask = _snp_mask(f)
    if not any(isinstance(h, m.GuestPolicy) and h.compatibility_mask & mask == mask
               for h in f.initializations):
        raise HarnessError("no SNP guest policy for the platform: the crate refuses to measure "
                           "(MeasurementError::MissingGuestPolicy)", 1)
    areas: dict[int, int] = {}
    steps: list[Step] = []
    for index, d in enumerate(f.directives):
        dmask = getattr(d, "compatibility_mask", None)
        if dmask is not None and dmask & mask != mask:
            continue
        if isinstance(d, m.ParameterArea):
            areas[d.parameter_area_index] = d.number_of_bytes
        elif isinstance(d, m.PageData):
            if d.flags & SHARED:
                continue
            tags = frozenset({"large-page"}) if d.flags & PageDataFlags.IS_2MB_PAGE else frozenset()
            if d.data_type == PageDataType.SECRETS:
                steps.append(Step(SnpPageType.SECRETS, d.gpa, _ZERO48, index, tags))
            elif d.data_type in (PageDataType.CPUID_DATA, PageDataType.CPUID_XF):
                steps.append(Step(SnpPageType.CPUID, d.gpa, _ZERO48, index, tags))
            elif d.flags & PageDataFlags.UNMEASURED:
                steps.append(Step(SnpPageType.UNMEASURED, d.gpa, _ZERO48, index, tags))
            else:
                steps.append(Step(SnpPageType.NORMAL, d.gpa, _page_contents(d.data), index, tags))
        elif isinstance(d, m.ParameterInsert):
            if d.parameter_area_index not in areas:
                raise HarnessError(f"directive {index}: parameter area {d.parameter_area_index} "
                                   "not declared (MeasurementError::InvalidParameterAreaIndex)", 1)
            size = areas[d.parameter_area_index]
            if size > MAX_PARAMETER_AREA_BYTES:
                raise HarnessError(f"directive {index}: parameter area of {size} bytes is past "
                                   f"the harness's bound {MAX_PARAMETER_AREA_BYTES}", 1)
            for gpa in range(d.gpa, d.gpa + size, PAGE_4K):
                steps.append(Step(SnpPageType.UNMEASURED, gpa, _ZERO48, index,
                                  frozenset({"parameter"})))
        elif isinstance(d, m.VpContext):
            steps.append(Step(SnpPageType.VMSA, d.gpa, _page_contents(d.data), index,
                              frozenset({"vmsa"})))
    return steps


def chain(steps: list[Step]) -> bytes:
    ld = SnpLaunchDigest()
    for s in steps:
        ld.update(SnpPageType(s.page_type), s.gpa, s.contents)
    return ld.ld


def crate_digest(f: m.IgvmFile) -> bytes:
    """The crate's digest, computed by the harness (must equal tools/igvm-oracle's)."""
    return chain(crate_steps(f))


_KIND_TYPE = {"normal": SnpPageType.NORMAL, "zero": SnpPageType.NORMAL,
              "unmeasured": SnpPageType.UNMEASURED, "secrets": SnpPageType.SECRETS,
              "cpuid": SnpPageType.CPUID}


def qemu_steps(f: m.IgvmFile, vcpus: int, host=None) -> tuple[list[Step], bytes]:
    """QEMU 10.2 + KVM's launch of the file on SEV-SNP as steps, and predict()'s digest."""
    from harness.measure import explain
    from harness.measure.launch import predict
    from harness.measure.pages import plan_launch

    pred = predict(f, "sev-snp", vcpus, host)
    plan = plan_launch(f, PlatformType.SEV_SNP, vcpus)
    steps: list[Step] = []
    for u in plan.updates:
        ptype = _KIND_TYPE[u.kind.value]
        per = u.page_size // PAGE_4K
        for i, page in enumerate(u.pages):
            directive = u.first_index + i if u.source == "page_data" else u.first_index
            d = f.directives[directive] if u.source == "page_data" else None
            tags = set()
            if u.source != "page_data":
                tags.add("parameter")
            if d is not None and getattr(d, "flags", 0) & SHARED:
                tags.add("shared")
            if u.page_size == PAGE_2M:
                tags.add("large-page")
            for j in range(per):
                gpa = u.gpa + i * u.page_size + j * PAGE_4K
                if ptype == SnpPageType.NORMAL:
                    chunk = bytes(page[j * PAGE_4K:(j + 1) * PAGE_4K]) if page is not None else b""
                    contents = hashlib.sha384(chunk.ljust(PAGE_4K, b"\0")).digest() if chunk \
                        else _ZERO_PAGE_HASH
                else:
                    contents = _ZERO48
                steps.append(Step(ptype, gpa, contents, directive, frozenset(tags)))
    for page in pred.vmsas:
        steps.append(Step(SnpPageType.VMSA, VMSA_GPA, explain._vmsa_hash(page, True), -1,
                          frozenset({"vmsa"})))
    return steps, pred.digest


class Comparison(Record):
    crate: list                      # Step
    qemu: list                       # Step
    applies: dict = Factory(dict)    # difference id -> one-line detail for this file
    unexplained: list = Factory(list)


def compare(crate: list[Step], qemu: list[Step], f: m.IgvmFile | None = None) -> Comparison:
    """Attribute every step where the two launches differ to an entry of DIFFERENCES."""
    out = Comparison(crate, qemu)
    cv = [s for s in crate if "vmsa" in s.tags]
    qv = [s for s in qemu if "vmsa" in s.tags]
    if cv or qv:
        out.applies["vmsa"] = (f"the crate measures {len(cv)} VMSA(s) of the file at "
                               f"{', '.join(f'{s.gpa:#x}' for s in cv) or '-'}; QEMU+KVM measure "
                               f"{len(qv)} built by KVM at {VMSA_GPA:#x}, after the pages")
    shared = [s for s in qemu if "shared" in s.tags]
    if shared:
        out.applies["shared"] = f"{len(shared)} shared page(s): QEMU measures them, the crate does not"
    cl = [s for s in crate if "large-page" in s.tags]
    ql = [s for s in qemu if "large-page" in s.tags]
    if cl or ql:
        out.applies["large-page"] = (f"{len(cl)} 2 MiB page(s): the crate measures {len(cl)} "
                                     f"unit(s), QEMU {len(ql)} pages of 4 KiB")
    explained = {"vmsa", "shared", "large-page"}
    rest_c = [s for s in crate if not (s.tags & explained)]
    rest_q = [s for s in qemu if not (s.tags & explained)]
    ca, qa = Counter(s.key for s in rest_c), Counter(s.key for s in rest_q)
    for key in (ca - qa):
        out.unexplained.append(f"only the crate measures {_name(key)} ({(ca - qa)[key]}x)")
    for key in (qa - ca):
        out.unexplained.append(f"only QEMU measures {_name(key)} ({(qa - ca)[key]}x)")
    if not out.unexplained and [s.key for s in rest_c] != [s.key for s in rest_q]:
        first = next(i for i, (a, b) in enumerate(zip(rest_c, rest_q)) if a.key != b.key)
        has_insert = any(isinstance(d, m.ParameterInsert) for d in (f.directives if f else ()))
        if has_insert:
            out.applies["order"] = (f"the same pages in another order from common step {first} "
                                    f"on (GPA {rest_c[first].gpa:#x} in the crate, "
                                    f"{rest_q[first].gpa:#x} in QEMU)")
        else:
            out.unexplained.append(f"order differs from step {first} on without a parameter "
                                   "insert to explain it")
    return out


def _name(key: tuple) -> str:
    t, gpa, contents = key
    return f"{SnpPageType(t).name} page at {gpa:#x}" + (
        f" ({contents[:6].hex()})" if t == SnpPageType.NORMAL else "")


def explain(f: m.IgvmFile, vcpus: int, host=None, oracle_digest: dict | None = None) -> dict:
    """Everything ``measure --explain`` shows for an IGVM file on SEV-SNP."""
    out: dict = {"platform": "sev-snp", "vcpus": vcpus, "qemu": None, "oracle": oracle_digest,
                 "crate_model": None, "differences": [], "unexplained": [],
                 "agreements": list(AGREEMENTS)}
    try:
        q_steps, q_digest = qemu_steps(f, vcpus, host)
        out.update(qemu=q_digest.hex(), qemu_steps=len(q_steps))
    except HarnessError as exc:
        q_steps = None
        out["qemu_error"] = str(exc)
    try:
        c_steps = crate_steps(f)
    except HarnessError as exc:
        out["crate_model_error"] = str(exc)
        if "MissingGuestPolicy" in str(exc) and q_steps is not None:
            out["differences"] = [{**BY_ID["policy"].as_dict(), "detail": str(exc)}]
        return out
    out.update(crate_model=chain(c_steps).hex(), crate_steps=len(c_steps))
    if q_steps is None:
        return out
    cmp = compare(c_steps, q_steps, f)
    out.update(differences=[{**BY_ID[k].as_dict(), "detail": v} for k, v in cmp.applies.items()],
               unexplained=cmp.unexplained)
    return out


def render(x: dict) -> str:
    lines = [f"QEMU 10.2 + KVM launch (sev-snp, {x['vcpus']} vCPU(s)): "
             f"{x['qemu'] or 'none: ' + x.get('qemu_error', '?')}"]
    o = x.get("oracle") or {}
    if o.get("digest"):
        lines.append(f"igvm crate {o.get('version', '')} (generate_snp_measurement):  {o['digest']}")
    else:
        lines.append(f"igvm crate (generate_snp_measurement): {o.get('error') or o.get('absent') or 'not asked'}")
    if x.get("crate_model"):
        same = ("equal to the crate's" if o.get("digest") == x["crate_model"] else
                "the crate's own answer is absent" if not o.get("digest") else "DIFFERS from the crate's")
        lines.append(f"  the harness's replay of the crate's model: {x['crate_model']} ({same})")
    else:
        lines.append(f"  the harness's replay of the crate's model: {x.get('crate_model_error')}")
    if x["differences"]:
        lines.append("where QEMU's launch differs from the crate's model:")
    for d in x["differences"]:
        lines.append(f"  [{d['id']}] {d['title']}: {d['detail']}")
        lines.append(f"      crate: {d['crate']}")
        lines.append(f"      QEMU:  {d['qemu']}")
        lines.append(f"      spec:  {d['spec']}")
    for u in x.get("unexplained", []):
        lines.append(f"  UNEXPLAINED: {u}")
    for a in x.get("agreements", []):
        lines.append(f"  (same in both: {a})")
    lines.append("(an OVMF wrap against the classic -bios launch of its firmware: --firmware FW.fd)")
    return "\n".join(lines)


__all__ = ["AGREEMENTS", "DIFFERENCES", "Difference", "Step", "chain", "compare", "crate_digest",
           "crate_steps", "explain", "qemu_steps", "render"]
