"""QEMU lint: valid IGVM that QEMU's loader will refuse or mishandle.

The IGVM validator answers "is this a well-formed IGVM file"; this lint
answers "will QEMU 10.x run it".  Every finding cites the QEMU source
(path: function) or documentation section it comes from.  Findings with
severity ``error`` make QEMU abort the launch; ``warning`` means QEMU runs
but does something the file's author probably did not intend.

QEMU considers only NATIVE, SEV, SEV-ES and SEV-SNP platforms
(backends/igvm.c: qigvm_supported_platform_compat_mask) and processes
every directive header, whatever its compatibility mask, through a fixed
handler table (backends/igvm.c: handlers[], qigvm_handler).

The lint is a consumer of the walk (:class:`Linter`, harness.igvm.walk):
it lints every platform at once in the pass that validates the file (or a
replay of a parsed one), page data run by run; :func:`lint` is its face.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.igvm import model as m
from harness.igvm.walk import Consumer, PageRun, replay
from harness.igvm.defs import (
    HeaderType, PageDataFlags, PageDataType, PlatformType, KVM_VMSA_GPA,
)
from harness.igvm.limits import MAX_VIOLATIONS
from harness.igvm.vmsa import SevEsVmsa

IGVM_C = "backends/igvm.c"
SEV_C = "target/i386/sev.c"
X86_IGVM_C = "target/i386/igvm.c"
DOC = "docs/system/igvm.rst"

#: Header types QEMU's handler table knows (backends/igvm.c: handlers[]).
QEMU_HANDLED = frozenset({
    HeaderType.PAGE_DATA, HeaderType.VP_CONTEXT, HeaderType.PARAMETER_AREA,
    HeaderType.PARAMETER_INSERT, HeaderType.MEMORY_MAP, HeaderType.VP_COUNT_PARAMETER,
    HeaderType.ENVIRONMENT_INFO_PARAMETER, HeaderType.REQUIRED_MEMORY,
    HeaderType.SNP_ID_BLOCK, HeaderType.GUEST_POLICY,
})

#: Platforms QEMU can launch, strongest first (qigvm_supported_platform_compat_mask).
QEMU_PLATFORMS = (PlatformType.SEV_SNP, PlatformType.SEV_ES, PlatformType.SEV,
                  PlatformType.NATIVE)

_PLATFORM_NAMES = {
    "native": PlatformType.NATIVE, "sev": PlatformType.SEV, "sev-es": PlatformType.SEV_ES,
    "sev_es": PlatformType.SEV_ES, "sev-snp": PlatformType.SEV_SNP,
    "sev_snp": PlatformType.SEV_SNP, "snp": PlatformType.SEV_SNP, "tdx": PlatformType.TDX,
    "vsm": PlatformType.VSM_ISOLATION, "vsm_isolation": PlatformType.VSM_ISOLATION,
    "cca": PlatformType.CCA,
}


@dataclass(frozen=True)
class LintFinding:
    rule: str
    message: str
    source: str
    severity: str = "error"
    platform: str | None = None
    header_index: int | None = None

    def __str__(self) -> str:
        where = f" [{self.platform}]" if self.platform else ""
        at = f" (header {self.header_index})" if self.header_index is not None else ""
        return f"{self.severity}: {self.rule}{where}: {self.message}{at} -- {self.source}"

    def as_dict(self) -> dict:
        return {"rule": self.rule, "message": self.message, "source": self.source,
                "severity": self.severity, "platform": self.platform,
                "header_index": self.header_index}


def platform_type(value) -> PlatformType | None:
    """PlatformType from a PlatformType, int or name ('sev-snp', 'SEV_SNP');
    None for None/'auto'."""
    if value is None or isinstance(value, PlatformType):
        return value
    if isinstance(value, int):
        return PlatformType(value)
    key = str(value).strip().lower()
    if key in ("", "auto", "all"):
        return None
    if key in _PLATFORM_NAMES:
        return _PLATFORM_NAMES[key]
    raise ValueError(f"unknown platform {value!r} (native, sev, sev-es, sev-snp)")


def _pname(t) -> str:
    return PlatformType(t).name.lower().replace("_", "-")


_SHARED = int(PageDataFlags.SHARED)
_SNP_ONLY_TYPES = (PageDataType.SECRETS, PageDataType.CPUID_DATA, PageDataType.CPUID_XF)


def lint(model_or_bytes, platform=None, limit: int | None = MAX_VIOLATIONS) -> list[LintFinding]:
    """Findings for ``platform`` (name or PlatformType), or for every
    QEMU-launchable platform the file declares when None.

    At most ``limit`` findings are kept (one per header made 8,001 findings
    and a quadratic report for 8,000 relocation regions); the rest are only
    counted, into one last ``qemu-lint-truncated`` finding whose severity is
    the worst of those left out."""
    want = platform_type(platform)
    linter = Linter(limit)
    if isinstance(model_or_bytes, m.IgvmFile):
        replay(model_or_bytes, [linter])
        return linter.findings(want)
    from harness.igvm.parser import scan
    from harness.igvm.rules import IgvmFormatError

    f, violations = scan(model_or_bytes, consumers=[linter])  # one pass, as parse(check=False)
    if f is None:
        raise IgvmFormatError.from_violation(violations[0])
    if not linter.complete:  # the walk stopped early, or platforms came late
        linter = Linter(limit)
        replay(f, [linter])
    return linter.findings(want)


class _Capped:
    """Findings in the order the lint makes them, at most ``cap`` kept (the
    report shows no more), the rest counted by severity: enough to assemble
    any selection of them under the same limit exactly."""

    __slots__ = ("cap", "items", "omitted")

    def __init__(self, cap: int | None) -> None:
        self.cap = cap
        self.items: list[LintFinding] = []
        self.omitted = {"error": 0, "warning": 0}

    def room(self, count: int) -> int:
        return count if self.cap is None else max(0, min(count, self.cap - len(self.items)))

    def add(self, rule, msg, source, severity="error", plat=None, index=None, count=1) -> None:
        """``count`` findings: the header at ``index`` and its identical copies."""
        keep = self.room(count)
        for i in range(keep):
            self.items.append(LintFinding(rule, msg, source, severity,
                                          _pname(plat) if plat is not None else None,
                                          index + i if index is not None else None))
        if count > keep:
            self.omitted[severity] = self.omitted.get(severity, 0) + count - keep


class _PlatformLint:
    """The per-platform part of the lint, for one QEMU platform: directive
    findings, then initialization findings (the order :func:`lint` lists them)."""

    def __init__(self, t: PlatformType, mask: int, cap: int | None) -> None:
        self.t = t
        self.mask = mask
        self.directives = _Capped(cap)
        self.initializations = _Capped(cap)
        self.areas: dict[int, int] = {}
        self.id_blocks = 0

    def pages(self, run: PageRun) -> None:
        """A finding per page of the run for each check it fails, page by page
        (each names its own address); past the cap they are only counted."""
        t = self.t
        checks = []
        if run.data_type in _SNP_ONLY_TYPES and t in (PlatformType.SEV, PlatformType.SEV_ES):
            name = PageDataType(run.data_type).name
            checks.append(("qemu-page-type-needs-snp",
                           lambda gpa: f"{name} page at 0x{gpa:x} needs SEV-SNP",
                           f"{SEV_C}: cgs_set_guest_state ('attempt to configure ... but SEV-SNP "
                           "is not supported')", "error"))
        if run.flags & _SHARED and t != PlatformType.NATIVE:
            checks.append(("qemu-page-shared-ignored",
                           lambda gpa: f"page at 0x{gpa:x} is marked shared; QEMU ignores the "
                           "flag and imports it as a private page",
                           f"{IGVM_C}: qigvm_type_to_cgs_type", "warning"))
        if not checks:
            return
        out, width = self.directives, len(checks)
        total = run.count * width
        keep = out.room(total)
        for n in range(keep):  # finding n: page n // width, check n % width
            rule, message, source, severity = checks[n % width]
            k = n // width
            out.add(rule, message(run.gpa + k * run.page_size), source, severity, t, run.index + k)
        for c, check in enumerate(checks):  # the findings of check c past the cap
            first = keep + (c - keep) % width
            if first < total:
                out.omitted[check[3]] += (total - 1 - first) // width + 1

    def header(self, h, at) -> None:
        t = self.t
        if at.section == 2:
            add = self.directives.add
            i, count = at.index, at.count
            if isinstance(h, m.ParameterArea):
                self.areas.setdefault(h.parameter_area_index, h.number_of_bytes)
            elif isinstance(h, (m.VpCountParameter, m.EnvironmentInfo)):
                size = self.areas.get(h.parameter_area_index)
                if size is not None and h.byte_offset + 4 > size:
                    add("qemu-parameter-outside-area", f"{HeaderType(h.TYPE).name} writes 4 bytes "
                        f"at offset 0x{h.byte_offset:x} of a 0x{size:x}-byte area; QEMU does not "
                        "check the bound",
                        f"{IGVM_C}: qigvm_directive_vp_count / qigvm_directive_environment_info",
                        plat=t, index=i, count=count)
            elif isinstance(h, m.VpContext):
                _lint_vp_context(h, t, lambda *a, **k: add(*a, index=i, count=count, **k))
            elif isinstance(h, m.SnpIdBlock):
                self.id_blocks += count
                if self.id_blocks >= 2 and self.id_blocks - count < 2:  # the second one, maybe in this run
                    add("qemu-multiple-id-blocks", "more than one SNP ID block for this platform",
                        f"{IGVM_C}: qigvm_directive_snp_id_block ('Multiple ID blocks')",
                        plat=t, index=i + 1 - (self.id_blocks - count))
        elif at.section == 1:
            if isinstance(h, m.GuestPolicy) and t != PlatformType.SEV_SNP:
                self.initializations.add(
                    "qemu-guest-policy-ignored", "GUEST_POLICY is only applied to SEV-SNP guests; "
                    "the sev-guest object's policy is used instead",
                    f"{IGVM_C}: qigvm_handle_policy", severity="warning", plat=t, index=at.index,
                    count=at.count)


class Linter(Consumer):
    """QEMU lint as a consumer of the walk: every QEMU platform the file
    declares is linted in the same pass (:meth:`findings` then selects, as
    :func:`lint` asks).  ``complete`` is false when the walk stopped early
    or a platform header came after other headers (then replay the model)."""

    def __init__(self, limit: int | None = MAX_VIOLATIONS) -> None:
        self.limit = limit
        self.unhandled = (_Capped(limit), _Capped(limit))  # initialization, directive section
        self.directive_count = 0
        self.present: list[PlatformType] = []
        self.platforms: dict[PlatformType, _PlatformLint] = {}
        self.complete = False

    def platforms_done(self, walk) -> None:
        for t in QEMU_PLATFORMS:
            mask = walk.mask_for(t)
            if any(p.platform_type == t for p in walk.platforms):
                self.present.append(t)
                self.platforms[t] = _PlatformLint(t, mask, self.limit)

    def header(self, walk, h, at) -> None:
        if at.section == 0:
            return
        if at.section == 2:
            self.directive_count += at.count
        t = h.header_type
        if t not in QEMU_HANDLED:
            name = (HeaderType(t).name if t in HeaderType._value2member_map_ else f"0x{t:X}")
            self.unhandled[at.section - 1].add(
                "qemu-unhandled-header", f"QEMU has no handler for {name} and aborts on it "
                "whatever its compatibility mask",
                f"{IGVM_C}: qigvm_handler ('Unknown header type encountered')", index=at.index,
                count=at.count)
        hm = getattr(h, "compatibility_mask", None)
        for p in self.platforms.values():
            if hm is None or hm & p.mask:
                p.header(h, at)

    def pages(self, walk, run: PageRun) -> None:
        self.directive_count += run.count
        for p in self.platforms.values():
            if run.mask & p.mask:
                p.pages(run)

    def end(self, walk) -> None:
        self.complete = not walk.late_platforms

    def findings(self, want: PlatformType | None = None) -> list[LintFinding]:
        """What :func:`lint` returns for ``want`` (None: every platform present)."""
        if self.walk_error is not None:
            raise self.walk_error
        file_level = _Capped(None)
        if not self.directive_count:
            file_level.add("qemu-no-directives", "no directive headers; QEMU rejects a directive "
                           "count of 0", f"{IGVM_C}: qigvm_process_file ('Invalid directive header "
                           "count')")
        if not self.present:
            file_level.add("qemu-no-usable-platform", "no NATIVE, SEV, SEV-ES or SEV-SNP platform",
                           f"{IGVM_C}: qigvm_supported_platform_compat_mask ('does not describe a "
                           "compatible supported platform')")
        parts = [*self.unhandled, file_level]
        if want is not None:
            if want not in QEMU_PLATFORMS:
                parts.append(_one("qemu-platform-unsupported", f"QEMU cannot launch {_pname(want)} "
                                  "guests", f"{DOC}: Supported Platforms", want))
                want = ()
            elif want not in self.platforms:
                parts.append(_one("qemu-platform-absent", f"the file declares no {_pname(want)} "
                                  "platform", f"{IGVM_C}: qigvm_supported_platform_compat_mask",
                                  want))
                want = ()
            else:
                want = (want,)
        targets = self.present if want is None else want
        for t in targets:
            p = self.platforms[t]
            parts += [p.directives, p.initializations]
        return _assemble(parts, self.limit)


def _one(rule: str, msg: str, source: str, plat) -> _Capped:
    c = _Capped(None)
    c.add(rule, msg, source, plat=plat)
    return c


def _assemble(parts, limit: int | None) -> list[LintFinding]:
    """The parts' findings in order, at most ``limit``, the rest counted into
    one last ``qemu-lint-truncated`` finding (the worst severity left out)."""
    out: list[LintFinding] = []
    omitted = {"error": 0, "warning": 0}
    for part in parts:
        for finding in part.items:
            if limit is None or len(out) < limit:
                out.append(finding)
            else:
                omitted[finding.severity] = omitted.get(finding.severity, 0) + 1
        for sev, n in part.omitted.items():
            omitted[sev] = omitted.get(sev, 0) + n
    if any(omitted.values()):
        out.append(LintFinding(
            "qemu-lint-truncated", f"{sum(omitted.values())} more finding(s) not listed "
            f"({omitted['error']} error(s), {omitted['warning']} warning(s)); the first "
            f"{limit} are", "harness/igvm/limits.py: MAX_VIOLATIONS",
            "error" if omitted["error"] else "warning"))
    return out


def _lint_vp_context(h: m.VpContext, t: PlatformType, add) -> None:
    if t == PlatformType.SEV:
        add("qemu-vp-context-unsupported", "SEV (without ES) cannot take an initial CPU state",
            f"{SEV_C}: cgs_set_guest_state ('attempt to configure initial VMSA, but SEV-ES is "
            f"not supported'); {DOC}: Limitations when using IGVM with AMD SEV, SEV-ES and "
            "SEV-SNP", plat=t)
        return
    if t == PlatformType.NATIVE:
        if h.vp_index != 0:
            add("qemu-vp-context-ap", f"native VP context for VP {h.vp_index}; QEMU sets the "
                "BSP only", f"{X86_IGVM_C}: qigvm_x86_set_vp_context ('context can be set for "
                "BSP only')", plat=t)
        return
    # SEV-ES / SEV-SNP: the data is a VMSA
    if h.gpa != KVM_VMSA_GPA:
        add("qemu-vmsa-gpa", f"VMSA GPA 0x{h.gpa:x}, KVM places it at 0x{KVM_VMSA_GPA:x}",
            f"{SEV_C}: check_vmsa_supported; {DOC}: Initial CPU state with VMSA",
            plat=t)
    if h.data is None or len(h.data) < SevEsVmsa.QEMU_CHECKED_SIZE:
        return
    v = SevEsVmsa.from_bytes(bytes(h.data[:SevEsVmsa.SIZE]).ljust(SevEsVmsa.SIZE, b"\0"))
    bad = v.qemu_unsupported_fields()
    if bad:
        add("qemu-vmsa-fields", f"VMSA fields outside QEMU's allow-list are non-zero: "
            f"{', '.join(bad)}", f"{SEV_C}: check_vmsa_supported; {DOC}: Initial CPU state "
            "with VMSA", plat=t)
    snp_bit = v.sev_features & SevEsVmsa.SEV_FEAT_SNP_ACTIVE
    if t == PlatformType.SEV_SNP and not snp_bit:
        add("qemu-vmsa-sev-features", "SEV-SNP VMSA without SEV_FEATURES.SNP_ACTIVE (bit 0)",
            f"{SEV_C}: check_sev_features", plat=t)
    elif t == PlatformType.SEV_ES and snp_bit:
        add("qemu-vmsa-sev-features", "SEV-ES VMSA with SEV_FEATURES.SNP_ACTIVE (bit 0) set",
            f"{SEV_C}: check_sev_features", plat=t)
