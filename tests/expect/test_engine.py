"""The verdict engine: documented expectation + deviation + boundary vs an
observed run.  Observations here are hand-written runs (the engine is pure);
real QEMU runs are in suites/matrix."""

from __future__ import annotations

import pytest

from harness.expect import table as T
from harness.expect import verdict as V
from harness.expect.versions import in_range, parse_version, VersionRangeError

SEV_BOUNDARY = T.Boundary(observable=("cmdline", "board", "igvm"),
                          error="accelerator does not support confidential guest sev-guest",
                          source=("system/vl.c: qemu_machine_creation_done",), description="")
VL_LINE = "qemu-system-x86_64: accelerator does not support confidential guest sev-guest"


def aborted(line: str, status: int = 1) -> V.Observed:
    return V.Observed(kind=V.ABORTED, exit_status=status, error_line=line, stderr=line + "\n")


def booted(ok: bool = True) -> V.Observed:
    return V.Observed(kind=V.BOOTED, report={"matrix": "ok" if ok else "bad"}, booted_ok=ok)


def exp(outcome, stage, error=None, deviation=None) -> T.Expectation:
    return T.Expectation(outcome=outcome, stage=stage, error=error, source=("docs/x.rst#Y",),
                         deviation=deviation)


def test_boot_passes_only_with_guest_success():
    doc, dev = V.effective_pair(exp("boots", "guest"), None)
    assert V.judge(doc, dev, booted()).status == V.PASS
    assert V.judge(doc, dev, booted(ok=False)).status == V.FAIL
    assert V.judge(doc, dev, aborted("qemu: oops")).status == V.FAIL


def test_abort_needs_status_1_and_the_text():
    e = exp("aborts", "igvm", error="does not describe a compatible supported platform")
    doc, dev = V.effective_pair(e, None)
    line = "qemu-system-x86_64: IGVM file does not describe a compatible supported platform"
    assert V.judge(doc, dev, aborted(line)).status == V.PASS
    assert V.judge(doc, dev, aborted(line, status=2)).status == V.FAIL
    v = V.judge(doc, dev, aborted("qemu-system-x86_64: something else"))
    assert v.status == V.FAIL and "something else" in v.observed and "compatible" in v.expected


def test_stage_beyond_boundary_becomes_boundary_never_pass():
    doc, dev = V.effective_pair(exp("boots", "guest"), SEV_BOUNDARY)
    assert doc.outcome == "boundary"
    v = V.judge(doc, dev, aborted(VL_LINE))
    assert v.status == V.BOUNDARY and "boundary" in v.reason
    # a launch-stage abort cannot be seen either
    doc, _ = V.effective_pair(exp("aborts", "launch", error="VMSA GPA"), SEV_BOUNDARY)
    assert V.judge(doc, None, aborted(VL_LINE)).status == V.BOUNDARY


def test_errors_before_the_boundary_are_real_verdicts():
    e = exp("aborts", "igvm", error="does not describe a compatible supported platform")
    doc, _ = V.effective_pair(e, SEV_BOUNDARY)
    assert doc.outcome == "aborts"
    # QEMU went on to the boundary instead of refusing the file: a failure
    assert V.judge(doc, None, aborted(VL_LINE)).status == V.FAIL


def test_deviation_is_xfail_with_reason_and_both_references():
    dev = T.Deviation(outcome="boots", stage="guest", reason="-bios ignored",
                      reference=("hw/i386/pc_sysfw.c: pc_system_firmware_init",))
    e = exp("aborts", "board", error="bios", deviation=dev)
    doc, d = V.effective_pair(e, None)
    v = V.judge(doc, d, booted(), dev_reason=dev.reason)
    assert v.status == V.XFAIL and "-bios ignored" in v.reason
    assert v.source == ("docs/x.rst#Y",) and v.reference == dev.reference
    # documented behaviour observed: pass (the deviation is gone)
    assert V.judge(doc, d, aborted("qemu: -bios not allowed with IGVM")).status == V.PASS
    # under the SEV boundary the deviation (boots) is seen as the boundary
    doc, d = V.effective_pair(e, SEV_BOUNDARY)
    assert V.judge(doc, d, aborted(VL_LINE), dev.reason).status == V.XFAIL


def test_deviation_version_range():
    dev = T.Deviation(outcome="boots", stage="guest", reason="r", reference=("a: b",),
                      qemu=">=10.2.2")
    e = exp("aborts", "igvm", error="not supported", deviation=dev)
    assert V.effective_pair(e, None, "10.2.2")[1] is not None
    assert V.effective_pair(e, None, "10.1.0")[1] is None


@pytest.mark.parametrize("kind", [V.CRASHED, V.HUNG])
def test_crash_and_hang_always_fail(kind):
    doc, dev = V.effective_pair(exp("aborts", "igvm", error="x"), None)
    assert V.judge(doc, dev, V.Observed(kind=kind, detail="SIGSEGV")).status == V.FAIL


def test_versions():
    assert parse_version("10.2.2") == (10, 2, 2)
    assert parse_version("10.1") == (10, 1, 0)
    assert parse_version("1:10.2.2+ds-1".split(":")[1]) == (10, 2, 2)
    assert in_range("10.2.2", ">=10.1,<10.3") and not in_range("10.0.5", ">=10.1")
    assert in_range("10.2.2", None)
    with pytest.raises(VersionRangeError):
        in_range("10.2.2", "~10")


def test_table_rejects_bad_data():
    plat = (T.data_dir() / "platforms.toml").read_text()
    ok = '[[case]]\nid="a"\nheader="PAGE_DATA"\nform="reset-vector"\nrecipe="guest"\n'
    T.parse_tables(ok + '[case.expect.all]\noutcome="boots"\nsource="docs/a.rst#B"\n', plat)
    bad = [
        ok + '[case.expect.all]\noutcome="boots"\n',                       # no source
        ok + '[case.expect.all]\noutcome="aborts"\nstage="igvm"\nsource="a: b"\n',  # no regex
        ok + '[case.expect.all]\noutcome="explodes"\nsource="a: b"\n',     # bad outcome
        ok + '[case.expect.mars]\noutcome="boots"\nsource="a: b"\n',       # bad platform
        ok + '[case.expect.all]\noutcome="boots"\nsource="a: b"\nqemu="10"\n',  # bad range
        ok + '[case.expect.all]\noutcome="aborts"\nstage="igvm"\nerror="("\nsource="a: b"\n',
        ok + ('[case.expect.all]\noutcome="boots"\nsource="a: b"\n'
              '[case.expect.all.deviation]\noutcome="aborts"\nstage="igvm"\nerror="x"\n'
              'reference="a: b"\n'),                                         # no reason
    ]
    for text in bad:
        with pytest.raises(T.ExpectDataError):
            T.parse_tables(text, plat)


def test_loads_accepts_a_running_guest_but_not_a_crash_or_refusal():
    dev = T.Deviation(outcome="loads", stage="guest", reason="parser does not enforce it",
                      reference=("backends/igvm.c: qigvm_file_init",))
    e = exp("aborts", "igvm", error="Unable to parse IGVM file", deviation=dev)
    doc, d = V.effective_pair(e, None)
    assert V.judge(doc, d, V.Observed(kind=V.HUNG), dev.reason).status == V.XFAIL
    assert V.judge(doc, d, booted(ok=False), dev.reason).status == V.XFAIL
    assert V.judge(doc, d, V.Observed(kind=V.CRASHED)).status == V.FAIL
    assert V.judge(doc, d, aborted("qemu: Unable to parse IGVM file x: -5")).status == V.PASS
    # without a 'loads' expectation a hang is a failure
    doc, _ = V.effective_pair(exp("boots", "guest"), None)
    assert V.judge(doc, None, V.Observed(kind=V.HUNG)).status == V.FAIL


# ------------------------------------------------- predict (no QEMU run)
def test_predict_documented_support_and_refusal():
    p = V.predict(exp("boots", "guest"))
    assert (p.accepted, p.status, p.reason) == (True, V.PASS, "")
    p = V.predict(exp("aborts", "igvm", error="Invalid page type"))
    assert (p.accepted, p.status) == (False, V.FAIL)
    assert "Invalid page type" in p.expected and p.source == ("docs/x.rst#Y",)


def test_predict_a_recorded_deviation_decides_within_its_version_range():
    # QEMU's code accepts what its documentation refuses (the SNP SECRETS
    # page case): accepted, as the matrix's xfail, both references given.
    dev = T.Deviation(outcome="boots", stage="guest", reason="code loads it",
                      reference=("target/i386/sev.c: cgs_set_guest_state",), qemu=">=10.1")
    e = exp("aborts", "launch", error="Invalid page type", deviation=dev)
    p = V.predict(e, "10.2.2")
    assert (p.accepted, p.status) == (True, V.XFAIL)
    assert "code loads it" in p.reason and p.reference == dev.reference
    assert "aborts" in p.expected and p.predicted.startswith("guest boots")
    # a QEMU outside the deviation's range behaves as documented
    assert V.predict(e, "10.0.0").accepted is False
    # and the reverse: documented as supported, refused by the code
    rev = T.Deviation(outcome="aborts", stage="igvm", reason="not implemented",
                      reference=("backends/igvm.c: f",), error="unsupported")
    p = V.predict(exp("boots", "guest", deviation=rev), "10.2.2")
    assert (p.accepted, p.status) == (False, V.FAIL) and "not implemented" in p.reason


def test_constructs_data_names_only_existing_cases():
    d = T.data_dir()
    cases, plats = (d / "cases.toml").read_text(), (d / "platforms.toml").read_text()
    table = T.parse_tables(cases, plats, (d / "constructs.toml").read_text())
    assert table.constructs["PAGE_DATA(SECRETS)"] == ("page-secrets",)
    with pytest.raises(T.ExpectDataError, match="unknown case"):
        T.parse_tables(cases, plats, '[constructs]\n"PAGE_DATA" = ["no-such-case"]\n')
