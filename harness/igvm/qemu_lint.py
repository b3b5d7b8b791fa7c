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
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.igvm import model as m
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


def lint(model_or_bytes, platform=None, limit: int | None = MAX_VIOLATIONS) -> list[LintFinding]:
    """Findings for ``platform`` (name or PlatformType), or for every
    QEMU-launchable platform the file declares when None.

    At most ``limit`` findings are kept (one per header made 8,001 findings
    and a quadratic report for 8,000 relocation regions); the rest are only
    counted, into one last ``qemu-lint-truncated`` finding whose severity is
    the worst of those left out."""
    if isinstance(model_or_bytes, m.IgvmFile):
        f = model_or_bytes
    else:
        from harness.igvm.parser import parse
        f = parse(model_or_bytes, check=False)
    want = platform_type(platform)
    out: list[LintFinding] = []
    omitted = {"error": 0, "warning": 0}

    def add(rule, msg, source, severity="error", plat=None, index=None, count=1):
        """``count`` findings: the header at ``index`` and its identical copies."""
        keep = count if limit is None else max(0, min(count, limit - len(out)))
        for i in range(keep):
            out.append(LintFinding(rule, msg, source, severity,
                                   _pname(plat) if plat is not None else None,
                                   index + i if index is not None else None))
        if count > keep:
            omitted[severity] = omitted.get(severity, 0) + count - keep

    _lint(f, want, out, add)
    if any(omitted.values()):
        out.append(LintFinding(
            "qemu-lint-truncated", f"{sum(omitted.values())} more finding(s) not listed "
            f"({omitted['error']} error(s), {omitted['warning']} warning(s)); the first "
            f"{limit} are", "harness/igvm/limits.py: MAX_VIOLATIONS",
            "error" if omitted["error"] else "warning"))
    return out


def _types(f: m.IgvmFile, *sections: str):
    """``(index, header type, count)`` as :func:`_indexed`, without building
    the headers of a lazy sequence (the type is all the check needs)."""
    base = len(f.platforms)
    for name in ("initializations", "directives"):
        seq = getattr(f, name)
        if name in sections:
            lazy = getattr(seq, "type_runs", None)
            runs = lazy() if lazy is not None else (
                (pos, h.header_type, count) for pos, h, count in m.runs(seq))
            for pos, t, count in runs:
                yield base + pos, t, count
        base += len(seq)


def _indexed(f: m.IgvmFile, *sections: str, mask: int | None = None):
    """``(index, header, count)`` over the named sections, ``index`` counted
    as :meth:`IgvmFile.headers` orders them; ``count`` identical headers
    (a run the scan recorded) come as one.  With ``mask``: only headers that
    apply to it (those without a mask always do)."""
    base = {"platforms": 0, "initializations": len(f.platforms)}
    base["directives"] = base["initializations"] + len(f.initializations)
    for name in sections:
        start = base[name]
        for pos, h, count in m.runs(getattr(f, name)):
            if mask is not None:
                hm = getattr(h, "compatibility_mask", None)
                if hm is not None and not hm & mask:
                    continue
            yield start + pos, h, count


def _lint(f: m.IgvmFile, want, out: list, add) -> list[LintFinding]:

    # -- whole file
    for i, t, count in _types(f, "initializations", "directives"):
        if t not in QEMU_HANDLED:
            name = (HeaderType(t).name if t in HeaderType._value2member_map_ else f"0x{t:X}")
            add("qemu-unhandled-header", f"QEMU has no handler for {name} and aborts on it "
                "whatever its compatibility mask",
                f"{IGVM_C}: qigvm_handler ('Unknown header type encountered')", index=i,
                count=count)
    if not f.directives:
        add("qemu-no-directives", "no directive headers; QEMU rejects a directive count of 0",
            f"{IGVM_C}: qigvm_process_file ('Invalid directive header count')")
    present = [t for t in QEMU_PLATFORMS if f.platform(t) is not None]
    if not present:
        add("qemu-no-usable-platform", "no NATIVE, SEV, SEV-ES or SEV-SNP platform",
            f"{IGVM_C}: qigvm_supported_platform_compat_mask ('does not describe a compatible "
            "supported platform')")
    if want is not None:
        if want not in QEMU_PLATFORMS:
            add("qemu-platform-unsupported", f"QEMU cannot launch {_pname(want)} guests",
                f"{DOC}: Supported Platforms", plat=want)
            return out
        if f.platform(want) is None:
            add("qemu-platform-absent", f"the file declares no {_pname(want)} platform",
                f"{IGVM_C}: qigvm_supported_platform_compat_mask", plat=want)
            return out
        targets = [want]
    else:
        targets = present
    for t in targets:
        _lint_platform(f, t, f.mask_for(t), add)
    return out


def _lint_platform(f: m.IgvmFile, t: PlatformType, mask: int, add) -> None:
    areas = {}
    id_blocks = 0
    for i, h, count in _indexed(f, "directives", mask=mask):
        if isinstance(h, m.ParameterArea):
            areas.setdefault(h.parameter_area_index, h.number_of_bytes)
        elif isinstance(h, (m.VpCountParameter, m.EnvironmentInfo)):
            size = areas.get(h.parameter_area_index)
            if size is not None and h.byte_offset + 4 > size:
                add("qemu-parameter-outside-area", f"{HeaderType(h.TYPE).name} writes 4 bytes at "
                    f"offset 0x{h.byte_offset:x} of a 0x{size:x}-byte area; QEMU does not "
                    "check the bound",
                    f"{IGVM_C}: qigvm_directive_vp_count / qigvm_directive_environment_info",
                    plat=t, index=i, count=count)
        elif isinstance(h, m.PageData):
            if h.data_type in (PageDataType.SECRETS, PageDataType.CPUID_DATA,
                               PageDataType.CPUID_XF) and t in (PlatformType.SEV,
                                                                PlatformType.SEV_ES):
                add("qemu-page-type-needs-snp", f"{PageDataType(h.data_type).name} page at "
                    f"0x{h.gpa:x} needs SEV-SNP",
                    f"{SEV_C}: cgs_set_guest_state ('attempt to configure ... but SEV-SNP is "
                    "not supported')", plat=t, index=i, count=count)
            if h.flags & PageDataFlags.SHARED and t != PlatformType.NATIVE:
                add("qemu-page-shared-ignored", f"page at 0x{h.gpa:x} is marked shared; QEMU "
                    "ignores the flag and imports it as a private page",
                    f"{IGVM_C}: qigvm_type_to_cgs_type", severity="warning", plat=t, index=i,
                    count=count)
        elif isinstance(h, m.VpContext):
            _lint_vp_context(h, t, lambda *a, **k: add(*a, index=i, count=count, **k))
        elif isinstance(h, m.SnpIdBlock):
            id_blocks += count
            if id_blocks >= 2 and id_blocks - count < 2:  # the second one, maybe in this run
                add("qemu-multiple-id-blocks", "more than one SNP ID block for this platform",
                    f"{IGVM_C}: qigvm_directive_snp_id_block ('Multiple ID blocks')",
                    plat=t, index=i + 1 - (id_blocks - count))
    for i, h, count in _indexed(f, "initializations", mask=mask):
        if isinstance(h, m.GuestPolicy) and t != PlatformType.SEV_SNP:
            add("qemu-guest-policy-ignored", "GUEST_POLICY is only applied to SEV-SNP guests; "
                "the sev-guest object's policy is used instead",
                f"{IGVM_C}: qigvm_handle_policy", severity="warning", plat=t, index=i,
                count=count)


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
