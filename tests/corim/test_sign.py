"""COSE_Sign1 over a CoRIM: made by pycose, checked by pycose and, independently,
by rebuilding RFC 9052's Sig_structure with cbor2 and verifying with
``cryptography`` directly."""

from __future__ import annotations

import hashlib

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from harness.corim import build, sign
from harness.corim.cbor import CorimError
from harness.igvm.defs import PlatformType

DOC = build.build(PlatformType.SEV_SNP, hashlib.sha384(b"doc").digest(), 2)
KEYS = {
    "P-256": (lambda: ec.generate_private_key(ec.SECP256R1()), "ES256", hashes.SHA256()),
    "P-384": (lambda: ec.generate_private_key(ec.SECP384R1()), "ES384", hashes.SHA384()),
    "P-521": (lambda: ec.generate_private_key(ec.SECP521R1()), "ES512", hashes.SHA512()),
    "Ed25519": (ed25519.Ed25519PrivateKey.generate, "EdDSA", None),
}


def _write_keys(tmp_path, key):
    priv = tmp_path / "key.pem"
    pub = tmp_path / "key.pub"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


def _independent_verify(signature: bytes, document: bytes, public_key, digest) -> None:
    """RFC 9052 section 4.4: Sig_structure = ["Signature1", protected, external_aad, payload]."""
    outer = cbor2.loads(signature)
    assert outer.tag == 18
    protected, unprotected, payload, sig = outer.value
    assert payload is None  # detached (igvm_defs: IGVM_VHT_CORIM_SIGNATURE)
    tbs = cbor2.dumps(["Signature1", protected, b"", document])
    if digest is None:
        public_key.verify(sig, tbs)
    else:
        n = len(sig) // 2  # RFC 9053 section 2.1: r || s, fixed width
        der = encode_dss_signature(int.from_bytes(sig[:n], "big"), int.from_bytes(sig[n:], "big"))
        public_key.verify(der, tbs, ec.ECDSA(digest))


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_signature_verifies_with_the_public_key(kind, tmp_path):
    make, alg, digest = KEYS[kind]
    key = make()
    priv, pub = _write_keys(tmp_path, key)
    signature = sign.sign(DOC, priv, "ACME Ltd.")
    info = sign.verify(signature, DOC, pub)
    assert (info.algorithm, info.signer, info.verified, info.detached) == (alg, "ACME Ltd.", True, True)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    assert info.kid == hashlib.sha256(der).hexdigest()
    _independent_verify(signature, DOC, key.public_key(), digest)
    header = cbor2.loads(cbor2.loads(signature).value[0])
    assert header[3] == "application/rim+cbor" and header[15] == {1: "ACME Ltd."}


def test_wrong_key_tampered_document_and_signature_fail(tmp_path):
    priv, pub = _write_keys(tmp_path, ec.generate_private_key(ec.SECP384R1()))
    other = tmp_path / "other"
    other.mkdir()
    _, other_pub = _write_keys(other, ec.generate_private_key(ec.SECP384R1()))
    signature = sign.sign(DOC, priv, "ACME")
    with pytest.raises(CorimError, match="does not verify"):
        sign.verify(signature, DOC, other_pub)
    with pytest.raises(CorimError, match="does not verify"):
        sign.verify(signature, DOC[:-1] + b"\x02", pub)
    bad = bytearray(signature)
    bad[-1] ^= 1
    with pytest.raises(CorimError, match="does not verify"):
        sign.verify(bytes(bad), DOC, pub)
    _, ed_pub = _write_keys(other, ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(CorimError, match="EdDSA"):
        sign.verify(signature, DOC, ed_pub)


@pytest.mark.parametrize("blob,message", [
    (b"", "empty"), (b"\xa0", "not a tagged COSE_Sign1"), (cbor2.dumps(cbor2.CBORTag(18, [1, 2])), "4 elements"),
    (cbor2.dumps(cbor2.CBORTag(18, [b"\xa1\x01\x26", {}, None, b""])), "signer"),
    (cbor2.dumps(cbor2.CBORTag(18, [b"\xa1\x01\x20", {}, None, b""])), "alg"),
])
def test_malformed_signatures_are_one_error(blob, message):
    with pytest.raises(CorimError, match=message):
        sign.read_signature(blob)


def test_bad_key_files(tmp_path):
    (tmp_path / "junk.pem").write_text("not a key\n")
    with pytest.raises(CorimError, match="not an unencrypted PEM private key"):
        sign.sign(DOC, tmp_path / "junk.pem", "x")
    with pytest.raises(CorimError, match="not a PEM public key"):
        sign.load_public_key(tmp_path / "junk.pem")
    from cryptography.hazmat.primitives.asymmetric import rsa
    priv, _ = _write_keys(tmp_path, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with pytest.raises(CorimError, match="cannot sign here"):
        sign.sign(DOC, priv, "x")
