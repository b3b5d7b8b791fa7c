"""The relying party's view of a vendor image carrying its reference values: real
OVMF (Debian's OVMF.amdsev, wrapped into IGVM by the harness), CoRIMs built,
signed, embedded and judged through the command line.

Independent oracles: sev-snp-measure computes the classic -bios digest a
vendor would publish for the firmware (and which QEMU's IGVM launch of the
wrap does not reproduce), and the igvm crate's CoRIM library appraises that
digest against our CoRIM; QEMU's source is the reason, cited in
harness/measure/explain.py and checked against sev-snp-measure's primitives
in tests/measure/test_classic_ovmf.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from harness.corim import build, decode, embed
from harness.igvm import ovmf, wrap_ovmf
from harness.igvm.defs import PlatformType
from tests.ovmf_images import debian_ovmf

ssm_guest = pytest.importorskip("sevsnpmeasure.guest", reason="sev-snp-measure (dev extra) not installed")
from sevsnpmeasure.sev_mode import SevMode  # noqa: E402
from sevsnpmeasure.vcpu_types import CPU_SIGS  # noqa: E402
from sevsnpmeasure.vmm_types import VMMType  # noqa: E402


def cli(*args, check=None):
    r = subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)], capture_output=True,
                       text=True, timeout=300)
    if check is not None:
        assert r.returncode == check, r.stdout + r.stderr
    return r


@pytest.fixture(scope="module")
def amdsev():
    return debian_ovmf("ovmf-amdsev")


@pytest.fixture(scope="module")
def wrap(amdsev, tmp_path_factory):
    path = tmp_path_factory.mktemp("vendor") / "vendor.igvm"
    path.write_bytes(wrap_ovmf.wrap(ovmf.load(amdsev), ("sev-snp",), 1))
    return path


def _sev_snp_measure_classic(path, vcpus=1) -> bytes:
    return ssm_guest.calc_launch_digest(SevMode.SEV_SNP, vcpus, CPU_SIGS["EPYC-v4"], str(path), "", "",
                                        "", 1, vmm_type=VMMType.QEMU)


def _report(outdir):
    (path,) = outdir.glob("certify-*.json")
    data = json.loads(path.read_text())
    return {c["id"]: c for c in data["checks"]}


def test_classic_corim_carries_sev_snp_measures_digest(amdsev, tmp_path):
    """`measure FW.fd --corim`: the reference value of the classic -bios launch,
    where QEMU's path and sev-snp-measure's model coincide (one vCPU)."""
    out = tmp_path / "classic.cbor"
    cli("measure", amdsev, "--platform", "sev-snp", "--corim", out, check=0)
    got = decode.decode(out.read_bytes())
    assert got.digest == _sev_snp_measure_classic(amdsev)
    assert (got.vendor, got.model, got.svn) == ("AMD", "SEV-SNP", 1)


def test_the_crate_appraises_the_classic_corim(oracle_binary, amdsev, tmp_path):
    """The relying party's step, by the igvm crate's CoRIM library (tools/igvm-oracle
    ``corim check --evidence``): the launch digest a report would carry for the classic
    -bios launch (sev-snp-measure's) is corroborated by our CoRIM and endorsed with its
    SVN; a digest one bit off is not."""
    from harness.reference import oracle

    out = tmp_path / "classic.cbor"
    cli("measure", amdsev, "--platform", "sev-snp", "--corim", out, "--svn", "6", check=0)
    evidence = _sev_snp_measure_classic(amdsev)
    r = oracle.corim_check(out, evidence=("sev-snp", evidence))
    assert r["ok"] and r["appraisal"]["corroborated"] == 1
    assert [e["svn"] for e in r["appraisal"]["endorsed"]] == [{"exact": 6}]
    off = bytes([evidence[0] ^ 1]) + evidence[1:]
    assert oracle.corim_check(out, evidence=("sev-snp", off))["appraisal"]["endorsed"] == []


def test_vendor_image_whose_reference_qemu_does_not_reproduce(amdsev, wrap, tmp_path):
    """The vendor published sev-snp-measure's digest of the firmware and put it in
    the wrap: QEMU's IGVM launch measures the SNP_SEC_MEM / SVSM_CAA /
    KERNEL_HASHES pages as NORMAL zeros, not page type ZERO.  Certify fails, naming
    both digests, the model that reproduces the reference and the page ranges."""
    reference = _sev_snp_measure_classic(amdsev)
    image = tmp_path / "mismatch.igvm"
    image.write_bytes(embed.attach(wrap.read_bytes(), [(PlatformType.SEV_SNP, build.build(
        PlatformType.SEV_SNP, reference, 7), None)]))
    r = cli("certify", image, "--no-boot", "--output", tmp_path / "rep", check=1)
    assert "FAIL sev-snp.corim" in r.stdout
    predicted = cli("measure", wrap, "--platform", "sev-snp", "--json", check=0)
    qemu = json.loads(predicted.stdout)["digest"]
    check = _report(tmp_path / "rep")["sev-snp.corim"]
    assert check["verdict"] == "fail"
    assert reference.hex() in check["message"] and qemu in check["message"]
    assert "classic -bios launch" in check["message"]
    ranges = check["evidence"]["details"]["ranges"]
    # the SEV metadata sections of page type ZERO in the classic launch (edk2
    # OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm: SNP_SEC_MEM starts at 0x800000)
    assert ranges[0]["gpa"] == "0x800000" and ranges[0]["reference_model"] == "ZERO"
    assert ranges[0]["qemu"] == "NORMAL (zeros)"
    # every page of the sections the classic launch gives type ZERO: SNP_SEC_MEM (1),
    # SVSM_CAA (4), KERNEL_HASHES (0x10) -- edk2 OvmfPkg/Include/WorkArea.h / the
    # SEV metadata types QEMU maps in snp_metadata_desc_to_page_type
    assert sum(x["pages"] for x in ranges) == sum(
        s.size for s in ovmf.load(amdsev).sev_metadata.sections
        if int(s.type) in (1, 4, 0x10)) // 4096


def test_vendor_image_whose_reference_matches(wrap, keys, tmp_path):
    """`measure --corim --sign --embed`: the reference value of QEMU's own launch,
    signed; certify passes the reference check and verifies the signature -- and
    the load verdict says this QEMU refuses the headers (matrix case corim-signed)."""
    key, pub = keys
    cbor, image = tmp_path / "ref.cbor", tmp_path / "signed.igvm"
    r = cli("measure", wrap, "--platform", "sev-snp", "--corim", cbor, "--svn", "3", "--sign", key,
            "--signer", "ACME Ltd.", "--embed", image, check=0)
    assert (tmp_path / "ref.cose").is_file() and "0x104/0x105" in r.stdout
    cli("certify", image, "--no-boot", "--output", tmp_path / "rep", "--corim-key", pub)
    checks = _report(tmp_path / "rep")
    assert checks["sev-snp.corim"]["verdict"] == "pass", checks["sev-snp.corim"]["message"]
    assert checks["corim.headers"]["verdict"] == "pass"
    assert "signature verified" in checks["corim.headers"]["message"]
    directives = checks["sev-snp.directives"]
    assert directives["verdict"] == "fail" and "CORIM_DOCUMENT" in directives["message"]
    # inspect / validate show the same, and verify the signature too
    v = cli("validate", image, "--corim-key", pub, check=1)
    assert "verified with" in v.stdout and "SVN 3" in v.stdout


def test_tampered_signature_and_malformed_corim_are_one_line_each(wrap, keys, tmp_path):
    key, pub = keys
    image = tmp_path / "signed.igvm"
    cli("measure", wrap, "--platform", "sev-snp", "--corim", tmp_path / "r.cbor", "--sign", key,
        "--embed", image, check=0)
    other = tmp_path / "other.pub"
    other.write_bytes(ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    r = cli("validate", image, "--corim-key", other, check=1)
    assert "does not verify" in r.stdout and "Traceback" not in r.stderr
    bad = tmp_path / "bad.igvm"
    bad.write_bytes(embed.attach(wrap.read_bytes(), [(PlatformType.SEV_SNP, b"\xd9\x01\xf5\xa1\x00",
                                                      None)]))
    r = cli("inspect", bad, check=1)
    line = [x for x in r.stdout.splitlines() if "CoRIM for sev-snp" in x]
    assert len(line) == 1 and "malformed" in line[0] and "Traceback" not in r.stderr
    r = cli("certify", bad, "--no-boot", "--output", tmp_path / "rep", check=1)
    assert "FAIL corim.headers" in r.stdout


def test_bad_options_are_usage_errors(wrap, tmp_path):
    r = cli("measure", wrap, "--platform", "sev-es", "--corim", tmp_path / "x.cbor", check=2)
    assert "no sev-es environment" in r.stderr and not (tmp_path / "x.cbor").exists()
    r = cli("measure", wrap, "--platform", "sev-snp", "--sign", tmp_path / "k.pem", check=2)
    assert "need --corim" in r.stderr
    (tmp_path / "k.pem").write_text("junk")
    r = cli("measure", wrap, "--platform", "sev-snp", "--corim", tmp_path / "x.cbor", "--sign",
            tmp_path / "k.pem")
    assert r.returncode != 0 and "not an unencrypted PEM private key" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "x.cbor").exists()
