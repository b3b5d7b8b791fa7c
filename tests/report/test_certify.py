"""The certification profile on images whose verdicts follow from QEMU's
documentation (docs/system/igvm.rst) and the IGVM specification."""

from __future__ import annotations

import json

import pytest

from harness.certify import profile
from harness.cli import main
from harness.errors import HarnessError
from harness.igvm import mutate
from harness.igvm.defs import PlatformType

from . import images


def _certify(path, platform="auto", **kw):
    kw.setdefault("boot", False)
    target = profile.prepare(path, platform, **kw)
    report = profile.certify(target)
    return report, {c.id: c for c in report.checks}


def test_plan_has_one_check_set_per_declared_platform(tmp_path):
    image = images.native_hello(tmp_path / "v.igvm", PlatformType.NATIVE, PlatformType.SEV_ES,
                                PlatformType.TDX)
    target = profile.prepare(image, boot=False)
    ids = [p.id for p in profile.plan(target)]
    assert ids[:2] == ["spec.validate", "qemu.lint"]
    for p in ("native", "sev-es"):
        assert [f"{p}.{k}" for k in ("directives", "vmsa", "measurement", "boot")] == \
            [i for i in ids if i.startswith(p + ".")]
    assert "platform.tdx" in ids and not any(i.startswith("sev.") for i in ids)


def test_valid_file_passes_spec_and_directives(tmp_path):
    image = images.native_hello(tmp_path / "v.igvm", PlatformType.NATIVE, PlatformType.SEV_ES)
    _, checks = _certify(image)
    assert checks["spec.validate"].verdict == "pass"
    # PAGE_DATA of type NORMAL is supported on every platform (igvm.rst table 1).
    assert checks["native.directives"].verdict == "pass"
    assert checks["sev-es.directives"].verdict == "pass"
    assert checks["native.measurement"].verdict == "skip"
    assert checks["native.boot"].message == "boot not requested (--no-boot)"


def test_spec_violation_fails_the_validation_check(tmp_path):
    good = images.native_hello(tmp_path / "good.igvm").read_bytes()
    bad = tmp_path / "bad.igvm"
    bad.write_bytes(mutate.MUTATORS["gpa-unaligned"](good))
    _, checks = _certify(bad)
    assert checks["spec.validate"].verdict == "fail"
    assert "gpa-unaligned" in checks["spec.validate"].message


def test_secrets_page_is_refused_on_sev_es(tmp_path):
    # "NORMAL zero, measured and unmeasured page types are supported. Other
    # page types result in an error." (docs/system/igvm.rst)
    image = images.with_secrets_page(tmp_path / "s.igvm", PlatformType.SEV_ES)
    report, checks = _certify(image)
    assert checks["sev-es.directives"].verdict == "fail"
    assert "PAGE_DATA(SECRETS)" in checks["sev-es.directives"].message
    cells = {(c.directive, c.platform): c for c in report.matrix}
    assert cells[("PAGE_DATA(SECRETS)", "sev-es")].verdict == "fail"
    assert cells[("PAGE_DATA", "sev-es")].verdict == "pass"


def test_vp_context_on_sev_is_refused(tmp_path):
    # "AMD SEV does not support encrypted save state regions, therefore
    # setting the initial CPU state using IGVM for SEV is not possible."
    image = images.with_vp_context(tmp_path / "v.igvm", PlatformType.SEV)
    _, checks = _certify(image)
    assert checks["sev.vmsa"].verdict == "fail"


def test_vmsa_gpa_must_be_kvms(tmp_path):
    # "When an IGVM file defines initial CPU state, the GPA for each VMSA must
    # match this hardcoded value" (0xFFFFFFFFF000, docs/system/igvm.rst).
    image = images.with_vp_context(tmp_path / "v.igvm", PlatformType.SEV_ES, gpa=0x10F000)
    _, checks = _certify(image)
    assert checks["sev-es.vmsa"].verdict == "fail"
    assert "0x10f000" in checks["sev-es.vmsa"].message


def test_requested_platform_must_be_declared(tmp_path):
    image = images.native_hello(tmp_path / "v.igvm")
    _, checks = _certify(image, "sev-snp")
    assert checks["platform.declared"].verdict == "fail"
    assert "declares no sev-snp platform (declares: native)" in checks["platform.declared"].message
    assert not any(i.startswith("sev-snp.") for i in checks)


def test_measurement_nothing_verified_is_predicted_not_pass(tmp_path):
    """A digest no SEV firmware measured is 'predicted': never a pass, never
    a failure, and the report stays 'partial'."""
    image = images.native_hello(tmp_path / "v.igvm", PlatformType.SEV_SNP)
    report, checks = _certify(image)
    check = checks["sev-snp.measurement"]
    [m] = check.evidence.measurements
    assert check.verdict == "predicted", check.message
    assert m.algorithm == "sha384" and len(m.digest) == 96 and m.observed is None
    assert "not verified" in check.message
    assert report.verdict() == "partial" and report.summary()["predicted"] == 1


@pytest.mark.parametrize("content, match, code", [
    (None, "no such file", 2),
    (b"not an igvm file at all", "not an IGVM file", 1),
])
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch,
                                                  content, match, code):
    monkeypatch.chdir(tmp_path)
    image = tmp_path / "x.igvm"
    if content is not None:
        image.write_bytes(content)
    rc = main(["certify", str(image), "--output", "out"])
    err = capsys.readouterr().err
    assert rc == code and match in err
    assert err.count("\n") == 1 and err.startswith("igvm-harness: ")
    assert not (tmp_path / "out").exists()
    with pytest.raises(HarnessError):
        profile.prepare(image)


def test_cli_writes_reports_and_summarises(tmp_path, capsys):
    image = images.with_secrets_page(tmp_path / "vendor.igvm", PlatformType.SEV_ES)
    rc = main(["certify", str(image), "--no-boot", "--output", str(tmp_path / "rep")])
    out, err = capsys.readouterr()
    assert rc == 1  # a failed check fails the certification
    assert "Certification of vendor.igvm: FAIL" in out
    assert "FAIL sev-es.directives" in out
    assert "[ 1/" in err and "spec.validate" in err  # progress lines
    files = sorted(p.suffix for p in (tmp_path / "rep").iterdir())
    assert files == [".html", ".json", ".xml"]
    doc = json.loads(next((tmp_path / "rep").glob("*.json")).read_text())
    assert doc["environment"]["image"]["sha256"] == __import__("hashlib").sha256(
        image.read_bytes()).hexdigest()


def test_a_non_qemu_binary_is_refused_not_booted(tmp_path, capsys, monkeypatch):
    """`--qemu /bin/true`: /bin/true exits 0 without output, which a boot
    check must not take for a guest that ran; the explicit choice is a usage
    error naming why (it is not QEMU), exit 2, and no report is written."""
    monkeypatch.chdir(tmp_path)
    image = images.native_hello(tmp_path / "v.igvm", PlatformType.NATIVE)
    rc = main(["certify", str(image), "--qemu", "/bin/true", "--output", "out"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("igvm-harness: --qemu /bin/true: ")
    assert "is not QEMU" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_boot_without_a_probe_is_a_skip_naming_why(tmp_path):
    """A QEMU found by discovery that the probe could not describe is never run."""
    image = images.native_hello(tmp_path / "v.igvm", PlatformType.NATIVE)
    target = profile.prepare(image, "native", boot=True, workdir=tmp_path / "work")
    target.probe, target.qemu, target.qemu_notes = None, "/bin/true", ["/bin/true is not QEMU"]
    check, _ = profile.run_check(target, next(p for p in profile.plan(target)
                                              if p.id == "native.boot"))
    assert check.verdict == "skip" and "could not be probed" in check.message
    assert "/bin/true is not QEMU" in check.message
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("value", ["0", "4097", "0x1001"])  # hw/i386/pc_q35.c max_cpus 4096
def test_vcpus_out_of_range_is_the_shared_usage_error(tmp_path, capsys, monkeypatch, value):
    """certify parses --vcpus with measure's parser (harness.igvm.limits.vcpus)."""
    monkeypatch.chdir(tmp_path)
    image = images.native_hello(tmp_path / "v.igvm", PlatformType.NATIVE)
    with pytest.raises(SystemExit) as exc:
        main(["certify", str(image), "--vcpus", value])
    assert exc.value.code == 2 and "must be 1 to 4096" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize("argv, match", [
    (["--output", "/proc/igvm-harness-out"], "/proc/igvm-harness-out: cannot create: "),
    (["--boot-timeout", "-1"], "--boot-timeout must be a positive number"),
    (["--boot-timeout", "nan"], "--boot-timeout must be a positive number"),
    (["--expect-console", "(unclosed"], "--expect-console: not a regular expression"),
    (["--expect-console", ""], "--expect-console: give a regular expression"),
])
def test_bad_options_are_one_line(tmp_path, capsys, monkeypatch, argv, match):
    monkeypatch.chdir(tmp_path)
    image = images.native_hello(tmp_path / "v.igvm", PlatformType.NATIVE)
    rc = main(["certify", str(image), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"igvm-harness: {match}") and err.count("\n") == 1
    assert not (tmp_path / "reports").exists()


def test_payload_kind_decides_the_default_markers(tmp_path):
    """OVMF is recognised by its footer GUID at 4 GiB - 0x30
    (hw/i386/pc_sysfw_ovmf.c); then only OVMF and Linux markers count.
    Anything else gets every known marker, the harness guests' line included."""
    from harness.certify import console

    ovmf_like = images.console_image(tmp_path / "o.igvm", b"x", ovmf_footer=True)
    plain = images.console_image(tmp_path / "p.igvm", b"x")
    for path, kind in ((ovmf_like, "ovmf"), (plain, "unknown")):
        target = profile.prepare(path, "native", boot=False)
        assert console.detect(target.model, target.mask("native")) == kind
        exp = console.expectation(target.model, target.mask("native"))
        assert bool(exp.pattern.search("IGVMT done status=0x0")) is (kind == "unknown")
        for line in ("BdsDxe: loading Boot0001 \"EFI Internal Shell\" from Fv(...)",
                     "BdsDxe: No bootable option was found.",
                     "BdsDxe: No bootable option or device was found.",
                     "UEFI Interactive Shell v2.2", "Shell> ",
                     "[    0.000000] Linux version 6.1.0-50-amd64",
                     "IGVMT linux kernel=6.1.0-50-amd64 arch=x86_64"):
            assert exp.pattern.search(line), (kind, line)
        assert not exp.pattern.search("BdsDxe: something else")
    # --expect-console replaces the defaults
    target = profile.prepare(ovmf_like, "native", boot=False, expect_console="^login: ")
    exp = console.expectation(target.model, target.mask("native"), target.expect_console)
    assert exp.pattern.search("host\nlogin: ") and not exp.pattern.search("Shell> ")
