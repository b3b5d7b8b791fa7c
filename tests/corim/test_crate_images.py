"""Images carrying CoRIM headers built by the igvm crate's serializer (tools/igvm-oracle
``corim embed``: ``IgvmSerializer::add_corim``, ``set_corim_signature``), as fixtures
for our readers -- and our images read by the crate's parser.

* The crate's serializer and ``harness.corim.embed.attach`` write the same bytes
  for the same document and signature (so our writer places headers and file
  data where the reference does).
* The crate's parser (corim feature) reads our headers back, document and
  signature byte for byte; with the optional bit set it refuses the file
  (``igvm/src/lib.rs`` ``new_from_binary``: a type outside the platform,
  initialization (``IGVM_VHT_RANGE_INIT`` = 0x101..=0x200) and directive ranges
  is ``InvalidBinaryVariableHeaderSection``).
* inspect / validate / certify read the crate-built images: the crate's
  document and our signature (verified with the public key), the digest the
  crate measured compared with QEMU's launch -- failing where QEMU measures
  otherwise (a parameter insert: QEMU measures it before the pages still
  pending, backends/igvm.c; the crate in file order), passing where the two
  coincide; and on real firmware, Debian's OVMF.amdsev wrapped into IGVM.
"""

from __future__ import annotations

import pytest
from harness.corim import embed, sign
from harness.igvm import ovmf, parser, wrap_ovmf
from harness.igvm.defs import PlatformType
from harness.measure import launch
from harness.reference import oracle
from tests.corim.fixtures import coinciding_snp_file, small_snp_file
from tests.corim.test_vendor import _report, cli
from tests.ovmf_images import debian_ovmf
from tests.reference.test_snp_digest import with_snp_policy


def crate_image(source: bytes, d, svn: int, key=None) -> tuple:
    """(path, the crate's answer, signature): ``source`` through the crate's serializer
    with its CoRIM, signed by us (pycose) when ``key`` is given."""
    src, out = d / "source.igvm", d / "crate.igvm"
    src.write_bytes(source)
    signature = None
    sig_path = None
    if key is not None:
        (built,), = oracle.corim_build([(src, "sev-snp", [svn])])
        signature = sign.sign(bytes.fromhex(built["corim"]), key, "ACME Ltd.")
        sig_path = d / "signature.cose"
        sig_path.write_bytes(signature)
    answer = oracle.corim_embed(src, out, "sev-snp", svn, sig_path)
    assert "error" not in answer, answer
    return out, answer, signature


@pytest.mark.parametrize("signed", [False, True])
def test_the_crates_serializer_writes_what_attach_writes(oracle_binary, keys, tmp_path, signed):
    source = small_snp_file()
    path, answer, signature = crate_image(source, tmp_path, 4, keys[0] if signed else None)
    ours = embed.attach(source, [(PlatformType.SEV_SNP, bytes.fromhex(answer["corim"]), signature)])
    assert path.read_bytes() == ours
    assert answer["size"] == len(ours) and answer["signed"] is signed


@pytest.mark.parametrize("optional", [False, True])
def test_the_crate_reads_our_headers_and_refuses_the_optional_bit(oracle_binary, keys, tmp_path,
                                                                  optional):
    from harness.corim import build
    source = small_snp_file()
    doc = build.build(PlatformType.SEV_SNP, launch.predict(parser.parse(source), "sev-snp", 1).digest, 2)
    signature = sign.sign(doc, keys[0], "ACME Ltd.")
    path = tmp_path / "ours.igvm"
    path.write_bytes(embed.attach(source, [(PlatformType.SEV_SNP, doc, signature)], optional=optional))
    (r,) = oracle.corim_read([path])
    if optional:
        assert r["any"]["ok"] is False and r["any"]["error"] == "InvalidBinaryVariableHeaderSection"
    else:
        assert r["any"] == {"ok": True, "headers": [
            {"kind": "document", "mask": 1, "data": doc.hex()},
            {"kind": "signature", "mask": 1, "data": signature.hex()}]}


def test_inspect_validate_certify_read_a_crate_built_image(oracle_binary, keys, tmp_path):
    """The crate's CoRIM states its own SNP model's digest: QEMU's launch differs (order of
    the parameter insert); certify fails naming both digests and the crate's model."""
    key, pub = keys
    path, answer, _ = crate_image(small_snp_file(), tmp_path, 7, key)
    found = embed.read(parser.parse(path.read_bytes(), check=False), pub)
    assert not found.failed, found.lines()
    (p,) = found.platforms
    assert (p.corim.digest.hex(), p.corim.svn) == (answer["digest"], 7)
    assert p.signature_info.verified and p.signature_info.signer == "ACME Ltd."
    v = cli("validate", path, "--corim-key", pub)
    assert "verified with" in v.stdout and "SVN 7" in v.stdout and answer["digest"] in v.stdout
    # exit 1: 0x104 / 0x105 are unknown to the C library QEMU links (no corim feature)
    i = cli("inspect", path, check=1)
    assert any("CoRIM for sev-snp" in x and answer["digest"] in x for x in i.stdout.splitlines())
    assert "unknown-header-type: type 0x104" in i.stdout
    cli("certify", path, "--no-boot", "--output", tmp_path / "rep", "--corim-key", pub)
    checks = _report(tmp_path / "rep")
    assert checks["corim.headers"]["verdict"] == "pass"
    assert "signature verified" in checks["corim.headers"]["message"]
    c = checks["sev-snp.corim"]
    qemu = launch.predict(parser.parse(small_snp_file()), "sev-snp", 1).digest.hex()
    assert c["verdict"] == "fail" and answer["digest"] in c["message"] and qemu in c["message"]
    assert "igvm crate" in c["message"]


def test_certify_passes_a_crate_built_image_whose_digest_qemu_reproduces(oracle_binary, keys,
                                                                         tmp_path):
    key, pub = keys
    path, answer, _ = crate_image(coinciding_snp_file(), tmp_path, 2, key)
    cli("certify", path, "--no-boot", "--output", tmp_path / "rep", "--corim-key", pub)
    c = _report(tmp_path / "rep")["sev-snp.corim"]
    assert c["verdict"] == "pass", c["message"]
    assert c["evidence"]["details"]["reference"] == answer["digest"]


def test_a_crate_built_ovmf_wrap(oracle_binary, keys, tmp_path):
    """Real firmware: Debian's OVMF.amdsev wrapped into IGVM, with the GUEST_POLICY the crate
    needs to measure SNP (MissingGuestPolicy otherwise; no part of either digest), its CoRIM
    added by the crate.  The crate measures the wrap's VP context as a VMSA page where the
    file puts it; QEMU hands it to KVM, which measures the VMSA it builds after every page
    (harness.measure.crate_model.DIFFERENCES "vmsa": backends/igvm.c:446,
    target/i386/sev.c:2552): certify fails, naming both digests, the crate's model and the
    VMSA fields that differ."""
    key, pub = keys
    wrap = with_snp_policy(wrap_ovmf.wrap(ovmf.load(debian_ovmf("ovmf-amdsev")), ("sev-snp",), 1))
    assert parser.parse(wrap).vp_contexts(), "the wrap carries a VP context"
    path, answer, _ = crate_image(wrap, tmp_path, 5, key)
    qemu = launch.predict(parser.parse(wrap), "sev-snp", 1).digest.hex()
    (crate,) = oracle.snp_digest_bytes({"w": wrap}).values()
    assert answer["digest"] == crate["digest"] != qemu
    cli("certify", path, "--no-boot", "--output", tmp_path / "rep", "--corim-key", pub)
    checks = _report(tmp_path / "rep")
    assert checks["corim.headers"]["verdict"] == "pass"
    assert "signature verified" in checks["corim.headers"]["message"]
    c = checks["sev-snp.corim"]
    assert c["verdict"] == "fail" and answer["digest"] in c["message"] and qemu in c["message"]
    assert "igvm crate" in c["message"] and "VMSA fields differ: vCPU 0" in c["message"], \
        c["message"]
