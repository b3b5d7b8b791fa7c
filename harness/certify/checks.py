"""The individual certification checks.

Each takes the :class:`~harness.certify.model.Target` and the platform it
is for, and returns an :class:`~harness.certify.model.Outcome` (verdict,
message, evidence, matrix cells).  Judgements come from the layers, called
directly: the validator (``harness.igvm.validate``), QEMU lint
(``harness.igvm.qemu_lint``), the expectation data and verdict engine
(``harness.expect``), the measurement layer (``harness.measure.launch``) and
the boot check (:mod:`harness.certify.boot`, through the runner).  What they
read of the image comes from the one walk that validated it
(:mod:`harness.certify.survey`).  The only
facts stated here are the ones QEMU's documentation gives directly, each
cited.
"""

from __future__ import annotations

from harness.certify import boot as boot_mod
from harness.certify import survey as survey_mod
from harness.certify.model import Outcome, Target
from harness.errors import HarnessError
from harness.expect import table as expect_table
from harness.expect import verdict as expect_verdict
from harness.igvm import model as m
from harness.igvm import qemu_lint as lint_mod
from harness.igvm import validate as validate_mod
from harness.igvm.defs import KVM_VMSA_GPA
from harness.report.model import Evidence, MatrixCell, Measurement

IGVM_DOC = "docs/system/igvm.rst"


def _qemu_version(target: Target) -> str | None:
    return target.probe.version if target.probe is not None else None


# ---------------------------------------------------------------- file level
def _survey(target: Target):
    return survey_mod.of_target(target)


def _platform(target: Target, platform: str):
    return survey_mod.of_platform(target, platform)


def spec_validate(target: Target, _platform: str | None) -> Outcome:
    violations = target.violations
    if violations is None:
        violations = validate_mod.validate(target.data)
    found = [v.as_dict() for v in violations]  # the first MAX_VIOLATIONS; the rest counted
    details: dict = {"violations": found} if found else {}
    if violations.truncated:
        details["violation_summary"] = violations.as_dict()
    ev = Evidence(details=details)
    if not found:
        return Outcome("pass", "no violation of the IGVM specification", ev)
    first = found[0]
    shown = f" ({len(found)} listed)" if violations.truncated else ""
    return Outcome("fail", f"{violations.total} violation(s){shown}; first: {first['rule']}: "
                           f"{first['message']}", ev)


def _lint(target: Target, platform: str | None) -> list[dict]:
    want = lint_mod.platform_type(platform)
    return [f.as_dict() for f in _survey(target).linter.findings(want)]


def qemu_lint(target: Target, _platform: str | None) -> Outcome:
    found = _lint(target, None)
    errors = [f for f in found if f["severity"] == "error"]
    warnings = [f for f in found if f["severity"] != "error"]
    ev = Evidence(details={"findings": found} if found else {})
    note = f"; {len(warnings)} warning(s): " + "; ".join(
        w["message"] for w in warnings[:3]) if warnings else ""
    if not errors:
        return Outcome("pass", "no construct QEMU is known to refuse" + note, ev)
    first = errors[0]
    return Outcome("fail", f"{len(errors)} finding(s); first: {first['rule']}: "
                           f"{first['message']}" + note, ev)


def platform_declared(target: Target, platform: str | None) -> Outcome:
    declared = ", ".join(target.declared + target.other_platforms) or "none"
    if platform in target.declared:
        return Outcome("pass", f"{target.image.name} declares {platform} (declares: {declared})")
    return Outcome("fail", f"{target.image.name} declares no {platform} platform "
                           f"(declares: {declared})")


def platform_not_in_qemu(target: Target, platform: str | None) -> Outcome:
    return Outcome("skip", f"QEMU implements no {platform} platform: QEMU selects among "
                           f"native, SEV, SEV-ES and SEV-SNP ({IGVM_DOC}#Supported Platforms)")


# ----------------------------------------------------------- per platform
def _form(target: Target, platform: str) -> str:
    return "vp-context" if _platform(target, platform).contexts.count else "reset-vector"


def directives(target: Target, platform: str | None) -> Outcome:
    """Every construct the file uses for ``platform``, asked of the same
    expectation data and verdict engine as the matrix (recorded deviations
    included): what QEMU at this version does with it."""
    assert platform
    table = expect_table.load()
    version = _qemu_version(target)
    form = _form(target, platform)
    cells, refused, unknown, deviating, rows = [], [], [], [], []
    for construct, count in _platform(target, platform).constructs.result().items():
        case, exp = table.construct_expectation(construct, platform, version)
        row = {"construct": construct, "headers": count, "case": case.id if case else None}
        if exp is None:
            unknown.append(construct)
            row.update(expected="no expectation recorded", source=[])
            cells.append(MatrixCell(directive=construct, platform=platform, verdict="skip",
                                    expected="no expectation recorded",
                                    observed=f"used {count}x", form=form))
            rows.append(row)
            continue
        p = expect_verdict.predict(exp, version)
        if not p.accepted:
            refused.append(construct)
        elif p.reason:
            deviating.append(f"{construct} ({p.reason})")
        row.update(expected=p.expected, predicted=p.predicted, status=p.status,
                   reason=p.reason, source=list(p.source), reference=list(p.reference))
        rows.append(row)
        cells.append(MatrixCell(directive=construct, platform=platform, verdict=p.status,
                                expected=p.expected,
                                observed=f"used {count}x; QEMU: {p.predicted}", form=form))
    qemu = f"QEMU {version or '(version unknown)'}"
    ev = Evidence(details={"qemu_version": version, "form": form, "directives": rows})
    if refused:
        return Outcome("fail", f"{qemu} refuses on {platform}: " + ", ".join(refused),
                       ev, cells)
    if unknown:
        return Outcome("skip", "no expectation recorded for " + ", ".join(unknown)
                       + f" on {platform}", ev, cells)
    note = ("; accepted against the documentation, as recorded: " + "; ".join(deviating)
            if deviating else "")
    return Outcome("pass", f"all {len(rows)} construct(s) accepted on {platform} by {qemu}"
                   + note, ev, cells)


def vmsa(target: Target, platform: str | None) -> Outcome:
    assert platform
    found = _platform(target, platform).contexts
    listing = [{"vp_index": c["vp_index"], "gpa": f"0x{c['gpa']:x}", "size": c["size"]}
               for c in found.listed]
    ev = Evidence(details={"vp_contexts": listing})
    if found.count > len(listing):  # a file of many: the first ones listed, the rest counted
        ev.details["vp_contexts_not_listed"] = found.count - len(listing)
    if not found.count:
        return Outcome("pass", f"no VP context for {platform}: the CPU starts in its reset "
                               "state", ev)
    if platform == "sev":
        # "AMD SEV does not support encrypted save state regions, therefore
        # setting the initial CPU state using IGVM for SEV is not possible."
        return Outcome("fail", f"{found.count} VP context(s) for SEV, which has no VMSA "
                               f"({IGVM_DOC}#Limitations when using IGVM with AMD SEV)", ev)
    problems = []
    if platform in ("sev-es", "sev-snp"):
        # "KVM uses a hardcoded GPA of 0xFFFFFFFFF000 for the VMSA."
        problems += [f"VP {c['vp_index']}: VMSA at GPA 0x{c['gpa']:x}, KVM requires "
                     f"0x{KVM_VMSA_GPA:x} ({IGVM_DOC}#Initial CPU state with VMSA)"
                     for c in found.gpa_mismatches]
    vp_findings = [f for f in _lint(target, platform) if f["severity"] == "error"
                   and any(k in f["rule"] for k in ("vmsa", "vp-context"))]
    if any(f["rule"] == "qemu-vmsa-gpa" for f in vp_findings):
        problems = []  # the lint says the same about the GPA, with its source
    problems += [f"{f['rule']}: {f['message']}" for f in vp_findings]
    ev.details["findings"] = vp_findings
    if problems:
        return Outcome("fail", "; ".join(problems), ev)
    return Outcome("pass", f"{found.count} VP context(s) within QEMU's restrictions", ev)


def _prediction(target: Target, platform: str) -> Measurement:
    """The predicted launch digest (QEMU's default policy, the measurement
    layer's default host profile); a refusal is the layer's HarnessError."""
    pred = _platform(target, platform).prediction().as_dict()
    notes = pred.pop("notes", None)
    inputs = {k: v for k, v in pred.items()
              if k not in ("digest", "algorithm", "platform", "vmsa_sources", "vcpus")
              and v is not None}
    if notes:
        inputs["notes"] = "; ".join(map(str, notes))
    return Measurement(platform=platform, algorithm=pred["algorithm"], digest=pred["digest"],
                       inputs={"vcpus": target.vcpus, **inputs})


def measurement(target: Target, platform: str | None) -> Outcome:
    """A digest no hardware checked is ``predicted``, never ``pass``: only an
    SEV host's firmware can confirm it."""
    assert platform
    if platform == "native":
        return Outcome("skip", "the native platform has no launch measurement")
    try:
        meas = _prediction(target, platform)
    except HarnessError as exc:  # the measurement layer refuses the file
        return Outcome("fail", f"no digest: {exc}")
    ev = Evidence(measurements=[meas])
    on_hardware = (target.boot and target.qemu is not None and target.probe is not None
                   and boot_mod.choose_accel(target, platform)[1])
    if not on_hardware:
        why = ("launches are off (--no-boot)" if not target.boot
               else f"no {platform.upper()} host here to measure the launch")
        return Outcome("predicted", f"{meas.algorithm} {meas.digest[:16]}... predicted, not "
                                    f"verified: {why}", ev)
    from harness.certify import hardware  # only on an SEV host: session crypto and all
    from harness.measure.verify import LaunchFailed

    try:
        seen = hardware.verify_on_hardware(target, platform)
    except HarnessError as exc:
        if isinstance(exc, LaunchFailed):
            ev.details["log"] = exc.log[-4096:]
        return Outcome("fail", f"launch on SEV hardware failed: {exc}", ev)
    meas.observed = seen["observed"]
    ev.details.update(seen["details"])
    if seen["ok"]:
        return Outcome("pass", f"{meas.algorithm} {meas.digest[:16]}... verified on this "
                               f"host's {platform} firmware", ev)
    return Outcome("fail", f"the firmware's measurement does not match the predicted "
                           f"{meas.algorithm} {meas.digest[:16]}...", ev)


def boot(target: Target, platform: str | None) -> Outcome:
    assert platform
    return boot_mod.boot(target, platform)
