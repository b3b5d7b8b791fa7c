"""How a cell runs on a host (harness.matrix.execute.plan), from probe
capabilities written out as data (harness.qemu.probe.Capabilities, the real
class; the SEV host below cannot exist here: it is described, not mocked
behaviour)."""

from __future__ import annotations

from harness.expect import table as T
from harness.matrix.cells import Cell
from harness.matrix.execute import Env, plan
from harness.qemu.probe import Accel, Capabilities, HostSev

TABLE = T.load()


def caps(sev_host: bool, early: bool = False, kvm: bool = True) -> Capabilities:
    host = HostSev(dev_sev=sev_host, dev_kvm=kvm,
                   kvm_amd={k: ("Y" if sev_host else None) for k in ("sev", "sev_es", "sev_snp")})
    props = ["policy", "cbitpos"] + (["igvm-file"] if early else [])
    return Capabilities(
        qemu="/q", version="10.2.2", version_line="QEMU emulator version 10.2.2",
        objects=["igvm-cfg", "sev-guest", "sev-snp-guest"], igvm_cfg_object=True,
        machine_igvm_cfg={"q35": True}, sev_types={"sev-guest": props, "sev-snp-guest": props},
        early_igvm_file=early, accels={"kvm": Accel(True, kvm, "" if kvm else "no /dev/kvm"),
                                       "tcg": Accel(True, True)}, host=host)


def cell(case_id: str, platform: str, syntax: str = "cfg") -> Cell:
    return Cell(TABLE.case(case_id), platform, syntax)


def test_no_sev_host_falls_back_to_tcg_with_the_boundary():
    env = Env("/q", caps(sev_host=False), TABLE)
    for platform in ("sev", "sev-es", "sev-snp"):
        p = plan(cell("page-normal", platform), env)
        assert (p.accel, p.mode, p.skip) == ("tcg", "tcg-fallback", None)
        assert p.boundary == TABLE.platforms[platform].boundary
    p = plan(cell("page-normal", "native"), env)
    assert (p.accel, p.mode, p.boundary) == ("kvm", "native-kvm", None)
    p = plan(cell("page-normal", "native"), Env("/q", caps(False, kvm=False), TABLE))
    assert (p.accel, p.mode) == ("tcg", "native-tcg")


def test_sev_host_runs_to_the_end_under_kvm():
    env = Env("/q", caps(sev_host=True), TABLE)
    for platform in ("sev", "sev-es", "sev-snp"):
        p = plan(cell("page-normal", platform), env)
        assert (p.accel, p.mode, p.boundary, p.skip) == ("kvm", "hardware", None, None)


def test_early_syntax_skips_when_qemu_lacks_it():
    p = plan(cell("page-normal", "sev", "sev-guest"), Env("/q", caps(False), TABLE))
    assert p.skip == "QEMU lacks sev-guest igvm-file property (early IGVM syntax)"
    p = plan(cell("page-normal", "sev", "sev-guest"), Env("/q", caps(False, early=True), TABLE))
    assert p.skip is None and p.mode == "tcg-fallback"


def test_accel_option_is_honoured_for_native():
    p = plan(cell("page-normal", "native"), Env("/q", caps(False), TABLE, accel="tcg"))
    assert p.accel == "tcg"


def test_unbuildable_fixture_is_a_suite_error_not_a_qemu_verdict(tmp_path):
    from harness.expect.verdict import SUITE_ERROR, SKIP
    from harness.matrix.execute import run_cell
    env = Env("/nonexistent/qemu", caps(sev_host=False), TABLE, guests={})  # no payloads
    r = run_cell(cell("page-normal", "native"), env, tmp_path)
    assert r.status == SUITE_ERROR and "fixture not built" in r.reason and not r.argv
    assert r.expected.startswith("guest boots")
    # a cell that cannot run here is a skip naming why, before any fixture is built
    r = run_cell(cell("page-normal", "sev", "sev-guest"), env, tmp_path)
    assert r.status == SKIP and "igvm-file" in r.reason
