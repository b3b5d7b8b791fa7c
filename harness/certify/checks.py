"""The individual certification checks.

Each takes the :class:`~harness.certify.profile.Target` and the platform it
is for, and returns an ``Outcome`` (verdict, message, evidence, matrix cells).
Judgements come from the layers (validator, QEMU lint, expectations data,
measurement, runner) through :mod:`harness.certify.adapters`; the only facts
stated here are the ones QEMU's documentation gives directly, each cited.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.certify import adapters, boot as boot_mod
from harness.certify.adapters import Unavailable
from harness.errors import HarnessError
from harness.igvm import model as m
from harness.igvm.defs import KVM_VMSA_GPA, HeaderType, PageDataFlags, PageDataType
from harness.report.model import Evidence, MatrixCell, Measurement

if TYPE_CHECKING:
    from harness.certify.profile import Outcome, Target

IGVM_DOC = "docs/system/igvm.rst"


def _outcome(*args: Any, **kw: Any) -> "Outcome":
    from harness.certify.profile import Outcome

    return Outcome(*args, **kw)


def _qemu_version(target: "Target") -> str | None:
    version = getattr(target.probe, "version", None)
    return str(version) if version else None


# ---------------------------------------------------------------- file level
def spec_validate(target: "Target", _platform: str | None) -> "Outcome":
    found = adapters.violations(target.data)
    ev = Evidence(details={"violations": found} if found else {})
    if not found:
        return _outcome("pass", "no violation of the IGVM specification", ev)
    first = found[0]
    return _outcome("fail", f"{len(found)} violation(s); first: {first.get('rule', '?')}: "
                            f"{first.get('message', '')}", ev)


def qemu_lint(target: "Target", _platform: str | None) -> "Outcome":
    found = adapters.lint(target.model, None)
    errors = [f for f in found if f.get("severity", "error") == "error"]
    warnings = [f for f in found if f not in errors]
    ev = Evidence(details={"findings": found} if found else {})
    note = f"; {len(warnings)} warning(s): " + "; ".join(
        str(w.get("message", "")) for w in warnings[:3]) if warnings else ""
    if not errors:
        return _outcome("pass", "no construct QEMU is known to refuse" + note, ev)
    first = errors[0]
    return _outcome("fail", f"{len(errors)} finding(s); first: {first.get('rule', '?')}: "
                            f"{first.get('message', '')}" + note, ev)


def platform_declared(target: "Target", platform: str | None) -> "Outcome":
    declared = ", ".join(target.declared + target.other_platforms) or "none"
    if platform in target.declared:
        return _outcome("pass", f"{target.image.name} declares {platform} (declares: {declared})")
    return _outcome("fail", f"{target.image.name} declares no {platform} platform "
                            f"(declares: {declared})")


def platform_not_in_qemu(target: "Target", platform: str | None) -> "Outcome":
    return _outcome("skip", f"QEMU implements no {platform} platform: QEMU selects among "
                            f"native, SEV, SEV-ES and SEV-SNP ({IGVM_DOC}#Supported Platforms)")


# ----------------------------------------------------------- per platform
#: Which expectation case (``harness/expect/data/cases.toml``) describes the
#: plain use of each construct a vendor file can contain; the first case with
#: an expectation for the platform counts.  Constructs map to cases by id,
#: not by guesswork, so a renamed case shows up as "no expectation recorded".
CONSTRUCT_CASES: dict[str, tuple[str, ...]] = {
    "PAGE_DATA": ("page-normal",),
    "PAGE_DATA(zero)": ("page-zero",),
    "PAGE_DATA(unmeasured)": ("page-unmeasured",),
    "PAGE_DATA(SECRETS)": ("page-secrets",),
    "PAGE_DATA(CPUID_DATA)": ("page-cpuid",),
    "PAGE_DATA(CPUID_XF)": ("page-cpuid-xf",),
    "VP_CONTEXT": ("vp-context",),
    "VP_CONTEXT(AP)": ("vp-context-ap",),
    "PARAMETER_AREA": ("parameter-vp-count-env-info", "memory-map"),
    "PARAMETER_INSERT": ("parameter-vp-count-env-info", "memory-map"),
    "VP_COUNT_PARAMETER": ("parameter-vp-count-env-info",),
    "ENVIRONMENT_INFO_PARAMETER": ("parameter-vp-count-env-info",),
    "MEMORY_MAP": ("memory-map",),
    "REQUIRED_MEMORY": ("required-memory",),
    "MADT": ("header-madt",),
    "SRAT": ("header-srat",),
    "MMIO_RANGES": ("header-mmio-ranges",),
    "COMMAND_LINE": ("header-command-line",),
    "DEVICE_TREE": ("header-device-tree",),
    "ERROR_RANGE": ("header-error-range",),
    "SNP_ID_BLOCK": ("id-block-single-ignored",),
    "SNP_ID_BLOCK(multiple)": ("id-block-multiple",),
    "GUEST_POLICY": ("guest-policy-snp", "guest-policy-ignored"),
    "UNKNOWN": ("header-unknown-type",),
}


def _construct(header: Any) -> str:
    """The construct name of one header (see CONSTRUCT_CASES)."""
    if isinstance(header, m.PageData):
        if header.data_type != PageDataType.NORMAL:
            try:
                return f"PAGE_DATA({PageDataType(header.data_type).name})"
            except ValueError:
                return f"PAGE_DATA(type {header.data_type})"
        if header.is_zero_page:
            return "PAGE_DATA(zero)"
        if header.flags & PageDataFlags.UNMEASURED:
            return "PAGE_DATA(unmeasured)"
        return "PAGE_DATA"
    if isinstance(header, m.VpContext) and header.vp_index != 0:
        return "VP_CONTEXT(AP)"
    try:
        return HeaderType(header.header_type).name
    except ValueError:
        return "UNKNOWN"


def _constructs(target: "Target", platform: str) -> dict[str, int]:
    """Constructs the file uses for ``platform`` -> number of headers."""
    mask = target.mask(platform)
    out: dict[str, int] = {}
    for header in (*target.model.initializations_for(mask), *target.model.directives_for(mask)):
        name = _construct(header)
        out[name] = out.get(name, 0) + 1
    if out.get("SNP_ID_BLOCK", 0) > 1:
        out["SNP_ID_BLOCK(multiple)"] = out.pop("SNP_ID_BLOCK")
    return out


def _form(target: "Target", platform: str) -> str:
    return "vp-context" if target.model.vp_contexts(target.mask(platform)) else "reset-vector"


def _expectation(table: Any, construct: str, platform: str, version: str | None):
    """(case, expectation) for a construct, or (None, None)."""
    ids = {c.id: c for c in table.cases}
    for case_id in CONSTRUCT_CASES.get(construct, ()):
        case = ids.get(case_id)
        exp = case.expectation(platform, version) if case else None
        if exp is not None:
            return case, exp
    return None, None


def directives(target: "Target", platform: str | None) -> "Outcome":
    assert platform
    table = adapters.expectations()
    version = _qemu_version(target)
    form = _form(target, platform)
    cells, refused, unknown, rows = [], [], [], []
    for construct, count in _constructs(target, platform).items():
        case, exp = _expectation(table, construct, platform, version)
        if exp is None:
            verdict, expected = "skip", "no expectation recorded"
            unknown.append(construct)
        elif exp.outcome == "boots":
            verdict, expected = "pass", "supported"
        else:
            verdict, expected = "fail", f"QEMU aborts: /{exp.error or ''}/"
            refused.append(construct)
        source = list(exp.source) if exp else []
        rows.append({"construct": construct, "headers": count, "case": case.id if case else None,
                     "expected": expected, "source": source})
        cells.append(MatrixCell(directive=construct, platform=platform, verdict=verdict,
                                expected=expected, observed=f"used {count}x", form=form))
    ev = Evidence(details={"qemu_version": version, "form": form, "directives": rows})
    if refused:
        return _outcome("fail", f"QEMU {version or '(version unknown)'} refuses on {platform}: "
                                + ", ".join(refused), ev, cells)
    if unknown:
        return _outcome("skip", "no expectation recorded for " + ", ".join(unknown)
                        + f" on {platform}", ev, cells)
    return _outcome("pass", f"all {len(rows)} construct(s) supported on {platform} by "
                            f"QEMU {version or '(version unknown)'}", ev, cells)


def vmsa(target: "Target", platform: str | None) -> "Outcome":
    assert platform
    contexts = target.model.vp_contexts(target.mask(platform))
    listing = [{"vp_index": c.vp_index, "gpa": f"0x{c.gpa:x}",
                "size": len(bytes(c.data or b""))} for c in contexts]
    ev = Evidence(details={"vp_contexts": listing})
    if not contexts:
        return _outcome("pass", f"no VP context for {platform}: the CPU starts in its reset "
                                "state", ev)
    if platform == "sev":
        # "AMD SEV does not support encrypted save state regions, therefore
        # setting the initial CPU state using IGVM for SEV is not possible."
        return _outcome("fail", f"{len(contexts)} VP context(s) for SEV, which has no VMSA "
                                f"({IGVM_DOC}#Limitations when using IGVM with AMD SEV)", ev)
    problems = []
    if platform in ("sev-es", "sev-snp"):
        # "KVM uses a hardcoded GPA of 0xFFFFFFFFF000 for the VMSA."
        problems += [f"VP {c.vp_index}: VMSA at GPA 0x{c.gpa:x}, KVM requires "
                     f"0x{KVM_VMSA_GPA:x} ({IGVM_DOC}#Initial CPU state with VMSA)"
                     for c in contexts if c.gpa != KVM_VMSA_GPA]
    lint_note = None
    try:
        findings = adapters.lint(target.model, platform)
    except Unavailable as exc:
        findings, lint_note = [], str(exc)
    vp_findings = [f for f in findings if f.get("severity", "error") == "error"
                   and any(k in str(f.get("rule", "")) for k in ("vmsa", "vp-context"))]
    if any(f.get("rule") == "qemu-vmsa-gpa" for f in vp_findings):
        problems = []  # the lint says the same about the GPA, with its source
    problems += [f"{f.get('rule', '?')}: {f.get('message', '')}" for f in vp_findings]
    ev.details["findings"] = vp_findings
    if problems:
        return _outcome("fail", "; ".join(problems), ev)
    if lint_note:
        return _outcome("skip", f"VMSA GPA correct; field allow-list not checked: {lint_note}",
                        ev)
    return _outcome("pass", f"{len(contexts)} VP context(s) within QEMU's restrictions", ev)


def measurement(target: "Target", platform: str | None) -> "Outcome":
    assert platform
    if platform == "native":
        return _outcome("skip", "the native platform has no launch measurement")
    try:
        result = adapters.predict(target.data, target.model, platform, target.vcpus)
    except HarnessError as exc:  # the measurement layer refuses the file
        return _outcome("fail", f"no digest: {exc}")
    meas = Measurement(platform=platform, algorithm=str(result.get("algorithm", "")),
                       digest=result.get("digest"),
                       inputs={"vcpus": target.vcpus, **result["inputs"]})
    ev = Evidence(measurements=[meas])
    if not meas.digest:
        return _outcome("error", "the measurement layer returned no digest", ev)
    on_hardware = (target.boot and target.qemu is not None and target.probe is not None
                   and boot_mod.choose_accel(target, platform)[1])
    if not on_hardware:
        return _outcome("pass", f"{meas.algorithm} {meas.digest[:16]}... predicted "
                                "(no SEV hardware to observe it here)", ev)
    from harness.certify import hardware

    try:
        seen = hardware.verify_on_hardware(target, platform)
    except HarnessError as exc:
        ev.details["log"] = getattr(exc, "log", "")[-4096:]
        return _outcome("fail", f"launch on SEV hardware failed: {exc}", ev)
    meas.observed = seen["observed"]
    ev.details.update(seen["details"])
    if seen["ok"]:
        return _outcome("pass", f"{meas.algorithm} {meas.digest[:16]}... verified on this "
                                f"host's {platform} firmware", ev)
    return _outcome("fail", f"the firmware's measurement does not match the predicted "
                            f"{meas.algorithm} {meas.digest[:16]}...", ev)


def boot(target: "Target", platform: str | None) -> "Outcome":
    assert platform
    return boot_mod.boot(target, platform)
