"""Launch-session crypto and SEV certificates against virtee/sev known answers."""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from harness.errors import HarnessError
from harness.measure import certs
from harness.measure.session import LaunchSession, aes128_ctr, hmac_sha256, kdf, session_blob
from tests.measure.conftest import b64, load_vector

CHAIN_RELATIONS = [
    ("pek", "pdh", True), ("cek", "pek", True), ("oca", "pek", True), ("oca", "oca", True),
    ("ask", "cek", True), ("ark", "ask", True), ("ark", "ark", True), ("pdh", "pek", False),
]


def test_kdf_kat():
    v = load_vector("sev_session_kdf_kat.json")["kdf_counter_mode_hmac_sha256"]
    got = kdf(bytes.fromhex(v["key"]), v["size"], bytes.fromhex(v["ctx"]), v["label"])
    assert got.hex() == v["expected"]


def test_hmac_kat():
    v = load_vector("sev_session_kdf_kat.json")["hmac_sha256"]
    assert hmac_sha256(bytes.fromhex(v["key"]), bytes.fromhex(v["data"])).hex() == v["expected"]


def test_session_blob_kat():
    v = load_vector("sev_session_kdf_kat.json")["session_blob"]
    h = bytes.fromhex
    blob = session_blob(h(v["z"]), h(v["nonce"]), h(v["wrap_iv"]), h(v["tek"]), h(v["tik"]), v["policy"])
    assert blob.wrap_tk.hex() == v["expected_wrap_tk"]
    assert blob.wrap_mac.hex() == v["expected_wrap_mac"]
    assert blob.policy_mac.hex() == v["expected_policy_mac"]
    raw = blob.to_bytes()
    assert len(raw) == 128
    assert raw[16:48] == blob.wrap_tk and raw[48:64] == blob.wrap_iv and raw[96:] == blob.policy_mac


def _chain(which: str) -> dict:
    v = load_vector("sev_cert_chain_kat.json")
    raw = {k: b64(x) for k, x in v[which].items()}
    out = {k: certs.SevCert.parse(raw[k]) for k in ("pdh", "pek", "oca", "cek")}
    out.update({k: certs.AmdCaCert.parse(raw[k]) for k in ("ark", "ask")})
    return out


@pytest.mark.parametrize("which", ["naples", "rome"])
@pytest.mark.parametrize("signer,subject,expected", CHAIN_RELATIONS)
def test_cert_chain_relations(which, signer, subject, expected):
    c = _chain(which)
    assert c[subject].signed_by(c[signer]) is expected


@pytest.mark.parametrize("which", ["naples", "rome"])
def test_pdh_fields(which):
    pdh = _chain(which)["pdh"]
    assert pdh.usage == certs.Usage.PDH and pdh.algo == certs.Algo.ECDH_SHA256
    key = pdh.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1"


def test_tampered_pdh_fails_verification():
    c = _chain("rome")
    raw = bytearray(c["pdh"].raw)
    raw[0x20] ^= 1  # a byte of the public key
    assert not certs.SevCert(bytes(raw)).signed_by(c["pek"])


def test_session_roundtrip_with_platform_side():
    """The platform's view: ECDH(PDH private, GODH public) recovers TEK and TIK."""
    platform_priv, pdh = certs.make_godh()  # stands in for the firmware's PDH
    s = LaunchSession.create(pdh, policy=0x5)
    godh = certs.SevCert.parse(s.godh.raw)
    assert godh.usage == certs.Usage.PDH and godh.signatures[0].empty and godh.signatures[1].empty
    z = platform_priv.exchange(ec.ECDH(), godh.public_key())
    master = kdf(z, 16, s.blob.nonce, "sev-master-secret")
    kek, kik = kdf(master, 16, b"", "sev-kek"), kdf(master, 16, b"", "sev-kik")
    assert aes128_ctr(kek, s.blob.wrap_iv, s.blob.wrap_tk) == s.tek + s.tik
    assert hmac_sha256(kik, s.blob.wrap_tk) == s.blob.wrap_mac
    assert hmac_sha256(s.tik, struct.pack("<I", 0x5)) == s.blob.policy_mac


def test_session_refuses_non_pdh():
    c = _chain("rome")
    with pytest.raises(HarnessError, match="not PDH"):
        LaunchSession.create(c["pek"], policy=1)


def test_short_cert_refused():
    with pytest.raises(HarnessError, match="expected 0x824"):
        certs.SevCert.parse(b"\1" * 10)
