"""The hardware flows up to the hardware boundary.

``ReplayQmp`` is a REPLAY of recorded QMP replies, not QEMU: the SEV-ES
replies carry the firmware version, policy and LAUNCH_MEASURE blob of
virtee/sevctl's recorded SEV-ES measurement (../shared/vectors), whose TIK is
known, so the MAC check runs on real firmware output.  The SNP launcher is a
simulation whose "firmware" decides with sev-snp-measure (an independent
oracle), not with the code under test.  Real-QEMU coverage of the command
line is in the conformance suites.
"""

from __future__ import annotations

import base64
import os
import struct
from contextlib import contextmanager

import pytest

from harness.errors import HarnessError
from harness.igvm import model as m
from harness.igvm.builder import IgvmBuilder, serialize
from harness.igvm.defs import KVM_VMSA_GPA, PlatformType
from harness.igvm.parser import load
from harness.measure import idblock, verify
from harness.measure.kvm_vmsa import HostProfile, VmType
from harness.measure.launch import predict
from harness.measure.session import LaunchSession
from tests.measure.conftest import b64, load_vector

ssm = pytest.importorskip("sevsnpmeasure.gctx", reason="sev-snp-measure (PyPI) not installed")
from sevsnpmeasure.vmsa import VMSA  # noqa: E402
from sevsnpmeasure.vmm_types import VMMType  # noqa: E402


class ReplayQmp:
    """REPLAY of recorded QMP exchanges: answers commands in the recorded order."""

    def __init__(self, exchanges: list[dict]) -> None:
        self.exchanges = list(exchanges)
        self.seen: list[tuple[str, dict | None]] = []

    def execute(self, command: str, arguments: dict | None = None):
        self.seen.append((command, arguments))
        if not self.exchanges:
            raise AssertionError(f"replay exhausted at {command}")
        rec = self.exchanges.pop(0)
        assert rec["execute"] == command, f"replay expected {rec['execute']}, got {command}"
        if "error" in rec:
            raise verify.QmpCommandError(f"{command}: {rec['error']['desc']}")
        return rec["return"]


def _rome():
    v = load_vector("sev_cert_chain_kat.json")["rome"]
    return {k: b64(x) for k, x in v.items()}


def _sevctl_es():
    v = load_vector("sevctl_measurement_build_kat.json")
    case = next(c for c in v["cases"] if c.get("vmsa_cpu0"))
    b = IgvmBuilder()
    b.platform(PlatformType.SEV_ES)
    fw = b64(v["data_b64"]["firmware"])
    b.pages((1 << 32) - len(fw), fw)
    for cpu in (1, 2, 3):
        b.vp_context(KVM_VMSA_GPA, b64(v["data_b64"]["vmsa1.bin"]), vp_index=cpu)
    return v, case, b.model()


def _caps_reply(rome):
    return {"execute": "query-sev-capabilities", "return": {
        "pdh": base64.b64encode(rome["pdh"]).decode(),
        "cert-chain": base64.b64encode(rome["pek"] + rome["oca"] + rome["cek"]).decode(),
        "cpu0-id": base64.b64encode(bytes(64)).decode(), "cbitpos": 47, "reduced-phys-bits": 1}}


def _sev_replies(case, attestation=None):
    out = [{"execute": "query-sev", "return": {
        "enabled": True, "api-major": case["api_major"], "api-minor": case["api_minor"],
        "build-id": case["build_id"], "state": "launch-secret", "sev-type": "sev",
        "policy": case["policy"], "handle": 1}},
        {"execute": "query-sev-launch-measure", "return": {"data": case["expected_b64"]}}]
    if attestation is None:
        out.append({"execute": "query-sev-attestation-report",
                    "error": {"class": "GenericError", "desc": "SEV: Failed to get attestation report"}})
    else:
        out.append({"execute": "query-sev-attestation-report", "return": {"data": attestation}})
    return out


HOST = HostProfile(vm_type=VmType.LEGACY, cpu_sig=0xA00F11)


def test_read_capabilities_verifies_chain():
    info = verify.read_capabilities(ReplayQmp([_caps_reply(_rome())]))
    assert info.chain_checks == {"PEK signs PDH": True, "OCA signs PEK": True, "CEK signs PEK": True}
    assert info.cbitpos == 47


def test_read_capabilities_refuses_foreign_pdh():
    rome, naples = _rome(), {k: b64(x) for k, x in load_vector("sev_cert_chain_kat.json")["naples"].items()}
    rome["pdh"] = naples["pdh"]
    with pytest.raises(HarnessError, match="not signed by the PEK"):
        verify.read_capabilities(ReplayQmp([_caps_reply(rome)]))


def test_sev_es_flow_replay_accepts_recorded_measurement(tmp_path):
    """verify_sev end to end against the replay: files handed to QEMU, MAC checked, files removed."""
    v, case, f = _sevctl_es()
    tik = b64(v["data_b64"]["tik1.bin"])
    seen = {}

    @contextmanager
    def launcher(props, igvm_path):
        seen["props"] = dict(props)
        godh = base64.b64decode(open(props["dh-cert-file"]).read())
        blob = base64.b64decode(open(props["session-file"]).read())
        seen["sizes"] = (len(godh), len(blob))
        yield ReplayQmp(_sev_replies(case))

    orig = LaunchSession.create
    LaunchSession.create = classmethod(lambda cls, pdh, policy, **kw: orig.__func__(cls, pdh, policy, tik=tik))
    try:
        verdict = verify.verify_sev(f, "sev-es", 4, HOST, case["policy"], ReplayQmp([_caps_reply(_rome())]),
                                    launcher, "unused.igvm", workdir=str(tmp_path))
    finally:
        LaunchSession.create = orig
    assert verdict.ok, verdict.report
    assert verdict.attestation_matches is None
    assert seen["sizes"] == (0x824, 128)
    assert seen["props"]["qom-type"] == "sev-guest" and seen["props"]["legacy-vm-type"] == "on"
    assert seen["props"]["policy"] == case["policy"]
    assert os.listdir(tmp_path) == []  # session files removed


def test_sev_es_replay_mismatch_gives_triage():
    """Predicting with the wrong CPU model (EPYC-v4 instead of sevctl's family 25
    model 1 stepping 1) for the recorded launch: refused, checklist printed, and the
    alternative search names the CPU model that reproduces the measurement."""
    v, case, f = _sevctl_es()
    rome = _rome()
    from harness.measure.certs import SevCert
    session = LaunchSession.create(SevCert.parse(rome["pdh"]), case["policy"], tik=b64(v["data_b64"]["tik1.bin"]))
    pred = predict(f, "sev-es", 4, HostProfile(), case["policy"])
    replies = _sev_replies(case) + [{"execute": "query-cpus-fast", "return": [{}] * 4}]
    verdict = verify.check_sev_launch(ReplayQmp(replies), session, pred,
                                      lambda h, n: predict(f, "sev-es", n, h, case["policy"]))
    assert not verdict.ok
    assert "single changes that reproduce the observation: vcpu-type=EPYC-Milan" in verdict.report
    assert "[ok] vCPU count: predicted with 4, observed 4" in verdict.report
    assert "[ok] policy: predicted with 0x5, observed 0x5" in verdict.report
    # field-by-field: only vCPU 0 (reset state) carries the CPU signature in RDX
    assert "vCPU 0: rdx: predicted 0x800f12, observed 0xa00f11" in verdict.report
    assert "vCPU 1: VMSAs identical" in verdict.report


def test_attestation_report_digest_compared():
    """query-sev-attestation-report (synthetic reply): digest and mnonce must both match."""
    v, case, f = _sevctl_es()
    from harness.measure.certs import SevCert
    session = LaunchSession.create(SevCert.parse(_rome()["pdh"]), case["policy"], tik=b64(v["data_b64"]["tik1.bin"]))
    pred = predict(f, "sev-es", 4, HOST, case["policy"])
    nonce = bytes(range(16))
    report = nonce + pred.digest + struct.pack("<III", case["policy"], 0x1002, 0x2) + bytes(0x40 - 0x3C + 144)
    verdict = verify.check_sev_launch(ReplayQmp(_sev_replies(case, base64.b64encode(report).decode())),
                                      session, pred, mnonce=nonce)
    assert verdict.ok and verdict.attestation_matches
    bad = nonce + bytes(32) + report[48:]
    replies = _sev_replies(case, base64.b64encode(bad).decode()) + [{"execute": "query-cpus-fast", "error": {
        "class": "CommandNotFound", "desc": "not recorded"}}]
    verdict = verify.check_sev_launch(ReplayQmp(replies),
                                      session, pred, mnonce=nonce)
    assert not verdict.ok and verdict.attestation_matches is False


def test_sev_state_must_be_launch_secret():
    v, case, f = _sevctl_es()
    replies = _sev_replies(case)
    replies[0]["return"]["state"] = "running"
    from harness.measure.certs import SevCert
    session = LaunchSession.create(SevCert.parse(_rome()["pdh"]), 5)
    with pytest.raises(HarnessError, match="launch-secret"):
        verify.check_sev_launch(ReplayQmp(replies), session, predict(f, "sev-es", 4, HOST, 5))


# ------------------------------------------------------------------ SNP
def _simulated_firmware_launcher(expected_ld: bytes, policy: int):
    """SIMULATION of SNP_LAUNCH_FINISH: accepts when the file's ID block holds
    ``expected_ld`` (computed by the test with sev-snp-measure) and ``policy``."""
    calls = []

    @contextmanager
    def launcher(props, igvm_path):
        f = load(igvm_path)
        blk = next(d for d in f.directives if isinstance(d, m.SnpIdBlock))
        pol = next(h for h in f.initializations if isinstance(h, m.GuestPolicy)).policy
        block = idblock.qemu_id_block_from_igvm(blk, pol)
        auth = idblock.qemu_id_auth_from_igvm(blk)
        calls.append(igvm_path)
        if not idblock.check_id_auth(block, auth):
            raise verify.LaunchFailed("qemu exited", "SNP_LAUNCH_FINISH ret=-5 fw_error=10 'Bad signature'")
        if bytes(blk.ld) != expected_ld or pol != props["policy"]:
            raise verify.LaunchFailed("qemu exited", "qemu-system-x86_64: SNP_LAUNCH_FINISH ret=-5 "
                                      "fw_error=11 'Bad measurement'")
        yield ReplayQmp([{"execute": "query-sev", "return": {
            "enabled": True, "api-major": 1, "api-minor": 55, "build-id": 0, "state": "running",
            "sev-type": "sev-snp", "snp-policy": props["policy"]}}])
    return launcher, calls


def test_snp_id_block_flow_good_and_tampered(tmp_path):
    b = IgvmBuilder()
    b.platform(PlatformType.SEV_SNP)
    page = bytes(range(256)) * 16
    b.pages(0x100000, page * 2)
    g = ssm.GCTX()
    g.update_normal_pages(0x100000, page * 2)
    for _ in range(2):
        g.update_vmsa_page(bytes(VMSA.build_save_area(0xFFFFFFF0, 0x1, 0x800F12, VMMType.QEMU)))
    launcher, calls = _simulated_firmware_launcher(g.ld(), 0x30000)
    good, bad = verify.verify_snp(b.model(), 2, HostProfile(), 0x30000, 51, 1, launcher, serialize,
                                  workdir=str(tmp_path))
    assert good.launched, good.detail
    assert not bad.launched and "fw_error 11 (Bad measurement)" in bad.detail
    assert good.digest_in_id_block == g.hex_ld() != bad.digest_in_id_block
    assert len(calls) == 2 and os.listdir(tmp_path) == []


def test_snp_object_properties():
    p = verify.snp_object_properties(0x30000, 51, 1)
    assert p == {"qom-type": "sev-snp-guest", "id": "sev0", "policy": 0x30000, "cbitpos": 51,
                 "reduced-phys-bits": 1}


def test_qemu_source_snp_policy_and_id_block_come_from_the_file(qemu_source):
    """Why verify_snp puts the ID block into the IGVM file and keeps its GUEST_POLICY
    equal to the sev-snp-guest policy: cgs_set_guest_policy drops any command-line
    ID block, and SNP_LAUNCH_START (with the object's policy) runs in
    sev_common_kvm_init, called from kvm_arch_init before the machine processes the
    IGVM file (hw/i386/pc_q35.c)."""
    src = qemu_source.tree
    sev = (src / "target/i386/sev.c").read_text()
    body = sev[sev.index("static int cgs_set_guest_policy"):]
    body = body[:body.index("\n}\n")]
    assert body.index("sev_snp_guest->id_block = NULL;") < body.index("if (policy_data1_size > 0)")
    init = sev[sev.index("static int sev_common_kvm_init"):]
    assert "klass->launch_start(sev_common)" in init[:init.index("\n}\n")]
    kvm = (src / "target/i386/kvm/kvm.c").read_text()
    assert "confidential_guest_kvm_init(ms->cgs" in kvm
    q35 = (src / "hw/i386/pc_q35.c").read_text()
    assert "->process(x86ms->igvm, machine->cgs, false" in q35
