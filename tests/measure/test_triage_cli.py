"""Triage helpers and the ``measure`` command line."""

from __future__ import annotations

import hashlib
import json

import pytest

from harness.cli import main
from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import KVM_VMSA_GPA, PlatformType
from harness.measure import triage

ssm_vmsa = pytest.importorskip("sevsnpmeasure.vmsa", reason="sev-snp-measure (PyPI) not installed")
from sevsnpmeasure.vmm_types import VMMType  # noqa: E402


def _dump(page: bytes, prefix: str = "[  12.345678] kvm_amd: ") -> str:
    """KVM's print_hex_dump_debug(DUMP_PREFIX_NONE, 16, 1) layout, as dmesg shows it."""
    rows = [prefix + "Virtual Machine Save Area (VMSA):"]
    for off in range(0, len(page), 16):
        rows.append(prefix + " ".join(f"{b:02x}" for b in page[off:off + 16]))
    return "\n".join(rows)


def test_parse_kvm_vmsa_dump_and_diff():
    a = bytes(ssm_vmsa.VMSA.build_save_area(0xFFFFFFF0, 0, 0x800F12, VMMType.QEMU))
    b = bytearray(a)
    b[0x3B0] = 0x20  # sev_features DebugSwap
    pages = triage.parse_kvm_vmsa_dump(_dump(a) + "\nnoise\n" + _dump(bytes(b)))
    assert pages == [a, bytes(b)]
    assert triage.vmsa_diff_lines(a, bytes(b)) == ["vCPU: sev_features: predicted 0x0, observed 0x20"]


def _write(tmp_path, platforms, vp=None):
    b = IgvmBuilder()
    for p in platforms:
        b.platform(p)
    b.pages(0x100000, b"\x42" * 6000)
    if vp is not None:
        b.vp_context(KVM_VMSA_GPA, vp)
    path = tmp_path / "f.igvm"
    b.write(path)
    return path


def test_cli_measure_json(tmp_path, capsys):
    path = _write(tmp_path, [PlatformType.SEV_ES])
    rc = main(["measure", str(path), "--platform", "sev-es", "--vcpus", "2", "--vm-type", "init2", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    ref = bytes(ssm_vmsa.VMSA.build_save_area(0xFFFFFFF0, 0, 0x800F12, VMMType.QEMU))
    data = b"\x42" * 6000 + bytes(8192 - 6000)
    assert out["digest"] == hashlib.sha256(data + ref + ref).hexdigest()
    assert out["vm_type"] == "init2" and out["vcpus"] == 2 and out["algorithm"] == "sha256"


def test_cli_measure_text(tmp_path, capsys):
    path = _write(tmp_path, [PlatformType.SEV_SNP])
    assert main(["measure", str(path), "--platform", "sev-snp", "--vcpu-type", "EPYC-Milan"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sev-snp launch digest (sha384): ")
    assert "cpu-signature=0xa00f11" in out


def test_cli_refuses_vp_context_for_sev(tmp_path, capsys):
    path = _write(tmp_path, [PlatformType.SEV], vp=bytes(4096))
    assert main(["measure", str(path), "--platform", "sev"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("igvm-harness: directive 2: a VP context cannot run on SEV")


@pytest.mark.parametrize("argv,code,msg", [
    (["--vcpu-type", "Nehalem"], 2, "unknown vCPU type"),
    (["--vm-type", "init2", "--kernel-profile", "linux-6.8"], 2, "needs KVM_SEV_INIT2"),
])
def test_cli_bad_host_options(tmp_path, capsys, argv, code, msg):
    path = _write(tmp_path, [PlatformType.SEV_ES])
    assert main(["measure", str(path), "--platform", "sev-es"] + argv) == code
    assert msg in capsys.readouterr().err


def test_cli_not_igvm(tmp_path, capsys):
    p = tmp_path / "x.igvm"
    p.write_bytes(b"not an igvm file at all")
    assert main(["measure", str(p), "--platform", "sev"]) == 1
    assert capsys.readouterr().err.startswith("igvm-harness: ")


def test_cli_expect_match_and_triage(tmp_path, capsys):
    """--expect with the digest of another CPU model: exit 1, the alternative named."""
    path = _write(tmp_path, [PlatformType.SEV_ES])
    data = b"\x42" * 6000 + bytes(8192 - 6000)
    milan = bytes(ssm_vmsa.VMSA.build_save_area(0xFFFFFFF0, 0, 0xA00F11, VMMType.QEMU))
    observed = hashlib.sha256(data + milan).hexdigest()
    argv = ["measure", str(path), "--platform", "sev-es", "--vm-type", "init2"]
    assert main(argv + ["--expect", observed]) == 1
    out = capsys.readouterr().out
    assert "single changes that reproduce the observation: vcpu-type=EPYC-Milan" in out
    assert "vCPU 0: rdx: predicted 0x800f12, observed 0xa00f11" in out
    assert main(argv + ["--vcpu-type", "EPYC-Milan", "--expect", observed]) == 0
    assert "matches" in capsys.readouterr().out
    assert main(argv + ["--expect", "zz"]) == 2


def test_object_arg():
    from harness.measure.verify import object_arg
    assert object_arg({"qom-type": "sev-guest", "id": "sev0", "policy": 5, "dh-cert-file": "/t/a,b",
                       "kernel-hashes": False}) == \
        "sev-guest,id=sev0,policy=5,dh-cert-file=/t/a,,b,kernel-hashes=off"
