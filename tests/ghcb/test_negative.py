"""Negative twins of the SEV-ES / SEV-SNP payloads: each is the matrix's
file for a booting cell with one thing broken -- in the payload, in the
IGVM file, or (last tests) in what the hypervisor offers.  Each must be
reported as a failure that names the exit code and the section of the
specification, never as a pass.

The payload patches are found by their bytes (fixtures/guests/ghcb/*.s);
when a pattern is gone the twin fails loudly: update it with the payload.
"""

from __future__ import annotations

import re

import pytest

from harness.ghcb import run_igvm
from harness.ghcb.report import judge
from harness.matrix import recipes

from tests.ghcb.conftest import CBIT, patch_config, patched

PLATFORMS = ("sev-es", "sev-snp")


def _run(data: bytes, platform: str, record_property, **kw):
    result = run_igvm(data, platform, cbit=CBIT, **kw)
    verdict = judge(result, recipes.STATUS_OK)
    record_property("ghcb_model", f"{result.status}; {result.counts_line()}")
    print(f"{platform}: {result.status}: {verdict.message}")
    assert not verdict.passed, "a negative twin passed"
    return result, verdict


@pytest.mark.parametrize("platform", PLATFORMS)
def test_wrong_ghcb_usage(platform, images, cell_file, tmp_path, record_property):
    """``movl $0, G_USAGE(%rdi)`` -> 1: KVM refuses the GHCB
    (GHCB_ERR_INVALID_USAGE) and the guest, seeing the error, terminates."""
    twin = patched(images["payload64-ghcb"], tmp_path, bytes.fromhex("c787fc0f000000000000"),
                   bytes.fromhex("c787fc0f000001000000"))
    result, verdict = _run(cell_file("vp-context", platform, {"payload64-ghcb": twin}), platform,
                           record_property)
    assert "0x7b (IOIO)" in verdict.message and "GHCB usage 0x1" in verdict.message
    assert 'GHCB 56421 rev 2.03, "GHCB Layout"' in verdict.message
    assert result.status == "terminated" and result.guest_status == 0xC4   # REASON_GHCB


@pytest.mark.parametrize("platform", PLATFORMS)
def test_wrong_protocol_version(platform, images, cell_file, tmp_path, record_property):
    """The GHCB's protocol version field set to 3, a version no hypervisor
    announced.  KVM does not check the field, so the guest even gets its
    output out -- the model still reports the violation."""
    data = images["payload64-ghcb"].data
    m = re.search(rb"\x8b\x05....\x66\x89\x87\xfa\x0f\x00\x00", data, re.S)
    assert m, "the version store of ghcb_ioio moved: update the twin"
    twin = patched(images["payload64-ghcb"], tmp_path, m.group(0),
                   bytes.fromhex("66c787fa0f00000300") + b"\x90" * 4)   # movw $3, 0xffa(%rdi)
    result, verdict = _run(cell_file("vp-context", platform, {"payload64-ghcb": twin}), platform,
                           record_property)
    top = 2 if platform == "sev-snp" else 1
    assert f"GHCB protocol version 3 is outside the range the hypervisor announced (1-{top}" \
        in verdict.message
    assert "0x7b (IOIO)" in verdict.message
    assert result.status == "exited"        # as on KVM: the violation is the model's finding


@pytest.mark.parametrize("platform", PLATFORMS)
def test_termination_request(platform, cell_file, record_property):
    """The configuration page's exit port moved to 0x600, where nothing
    listens: the write to "isa-debug-exit" goes nowhere and the guest ends
    with its fallback, a GHCB MSR-protocol termination request carrying the
    status (reason code set 3)."""
    data = patch_config(cell_file("vp-context", platform), exit_port=0x600)
    result, verdict = _run(data, platform, record_property)
    assert result.status == "terminated"
    assert "reason code set 0x3, reason code 0x2a" in result.reason
    assert 'GHCB MSR protocol 0x100, GHCB 56421 rev 2.03 "Termination Request"' in result.reason
    assert verdict.report.status == recipes.STATUS_OK        # the guest did report


@pytest.fixture(scope="module")
def reset_long_before_fix(tmp_path_factory):
    """reset_long.s as it was before the model ran it: EFER written whole as
    LME (``mov $EFER_LME, %eax; xor %edx, %edx; wrmsr``), assembled by the
    harness's own recipe (harness.guests.build) from the edited source."""
    import shutil
    from harness.guests import build as gb
    src = tmp_path_factory.mktemp("src")
    (src / "ghcb").mkdir()
    shutil.copy(gb.SOURCE_DIR / "platform.inc", src)
    text = (gb.SOURCE_DIR / "ghcb" / "reset_long.s").read_text()
    fixed = "        rdmsr\n        or      $EFER_LME, %eax\n"
    assert text.count(fixed) == 1, "reset_long.s changed: update the twin"
    (src / "ghcb" / "reset_long.s").write_text(
        text.replace(fixed, "        mov     $EFER_LME, %eax\n        xor     %edx, %edx\n"))
    return gb.build_guest("reset-long", cache=tmp_path_factory.mktemp("cache"), source_dir=src)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_efer_written_without_svme(platform, reset_long_before_fix, cell_file, record_property):
    """EFER written as LME alone clears the SVME bit KVM put in the VMSA."""
    result, verdict = _run(cell_file("page-normal", platform, {"reset-long": reset_long_before_fix}),
                           platform, record_property)
    assert result.status == "vmexit-invalid"
    assert "WRMSR EFER <- 0x100" in result.reason
    assert "EFER.SVME is zero" in result.reason and "VMEXIT_INVALID" in result.reason
    assert '"Canonicalization and Consistency Checks"' in result.reason
    assert not result.console


@pytest.mark.parametrize("platform", PLATFORMS)
def test_ghcb_left_encrypted(platform, images, cell_file, tmp_path, record_property):
    """``btr %rcx, %rax`` (clearing the C-bit in the GHCB's PDE) removed:
    the guest writes its GHCB through an encrypted mapping."""
    twin = patched(images["payload64-ghcb"], tmp_path, bytes.fromhex("480fb3c8"), b"\x90" * 4)
    result, verdict = _run(cell_file("vp-context", platform, {"payload64-ghcb": twin}), platform,
                           record_property)
    if platform == "sev-es":
        # the hypervisor reads the shared view: an empty GHCB, no valid input
        assert "written through an encrypted (C-bit) mapping" in verdict.message
        assert "GHCB_ERR_MISSING_INPUT" in verdict.message
    else:
        # SNP: the page was made shared; a private access converts it back,
        # not validated, and the next access raises #VC 0x404
        assert result.status == "shutdown"
        assert "#VC (error code 0x404 (PAGE_NOT_VALIDATED))" in result.reason


def test_protocol_range_not_supported(cell_file, record_property):
    """A hypervisor whose minimum GHCB version (3) is above the guest's
    newest (2): the guest must terminate with reason set 0, code 1."""
    result, _ = _run(cell_file("vp-context", "sev-snp"), "sev-snp", record_property,
                     hypervisor={"ghcb_min": 3, "ghcb_max": 3})
    assert result.status == "terminated"
    assert "reason code set 0x0, reason code 0x1 (SEV-ES / GHCB protocol range is not " \
           "supported)" in result.reason
    assert not result.console


def test_registration_refused(cell_file, record_property):
    """SNP: the hypervisor answers the GHCB GPA registration with the
    all-ones GFN; the guest must not use the GHCB (it terminates, reason
    0xc2) -- before the fix it went on, and KVM fails KVM_RUN for an
    unregistered GHCB."""
    result, _ = _run(cell_file("vp-context", "sev-snp"), "sev-snp", record_property,
                     hypervisor={"refuse_registration": True})
    assert result.status == "terminated" and result.guest_status == 0xC2
