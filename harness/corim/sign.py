"""Sign a CoRIM and check a signature: COSE_Sign1 through ``pycose``.

The signature an IGVM file carries next to its CoRIM (header 0x105) is "a
COSE_Sign1 structure for a detached CoRIM CBOR payload" (igvm_defs 0.5,
``IGVM_VHT_CORIM_SIGNATURE``): the payload slot is nil and the document is
the 0x104 header's data.  Its protected header is the
``protected-corim-header-map`` of draft-ietf-rats-corim-10: ``alg`` (1),
``content-type`` (3) "application/rim+cbor", and the meta group, here the
signer in CWT claims (15, RFC 9597: ``iss``); the harness adds ``kid`` (4),
the SHA-256 of the public key's DER SubjectPublicKeyInfo, so that a relying
party holding several keys finds the one.  Keys are PEM: EC P-256 / P-384 /
P-521 (ES256 / ES384 / ES512, RFC 9053 section 2.1) or Ed25519 (EdDSA).
"""

from __future__ import annotations

import hashlib

from harness.corim import profile as P
from harness.corim.cbor import CBORTag, CorimError, loads
from harness.inputs import read_input
from harness.record import Record

#: A PEM key or certificate file is read only up to this size.
MAX_KEY_FILE_BYTES = 64 * 1024

#: COSE algorithm ids (IANA "COSE Algorithms"), by name.
ALGORITHMS = {-7: "ES256", -35: "ES384", -36: "ES512", -8: "EdDSA"}


class SignatureInfo(Record, frozen=True):
    """What a COSE_Sign1 says about itself (before or after verification)."""

    algorithm: str
    content_type: str | None
    signer: str | None
    kid: str | None
    detached: bool
    verified: bool = False
    key: str | None = None        # the key file it was verified with

    def as_dict(self) -> dict:
        return {"algorithm": self.algorithm, "content_type": self.content_type,
                "signer": self.signer, "kid": self.kid, "detached": self.detached,
                "verified": self.verified, "key": self.key}

    def summary(self) -> str:
        who = f" by {self.signer!r}" if self.signer else ""
        state = f"verified with {self.key}" if self.verified else "not verified (no key given)"
        return f"COSE_Sign1 {self.algorithm}{who}, kid {self.kid or 'none'}: {state}"


def _read_pem(path) -> bytes:
    return read_input(path, MAX_KEY_FILE_BYTES,
                      lambda n: f"{n} bytes: not a PEM key (the limit is {MAX_KEY_FILE_BYTES})")


def _algorithm_of(key) -> int:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        alg = {"secp256r1": -7, "secp384r1": -35, "secp521r1": -36}.get(key.curve.name)
        if alg is None:
            raise CorimError(f"EC curve {key.curve.name} has no COSE algorithm here "
                             "(P-256, P-384, P-521)")
        return alg
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return -8
    raise CorimError(f"a {type(key).__name__} cannot sign here: use an EC (P-256/384/521) or "
                     "Ed25519 key")


def key_id(public_key) -> bytes:
    """SHA-256 of the DER SubjectPublicKeyInfo."""
    from cryptography.hazmat.primitives import serialization
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).digest()


def load_private_key(path):
    from cryptography.hazmat.primitives import serialization
    pem = _read_pem(path)
    try:
        return pem, serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CorimError(f"{path}: not an unencrypted PEM private key: {_first_line(exc)}") from None


def load_public_key(path):
    """A PEM public key, certificate (its key) or private key (its public half)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    pem = _read_pem(path)
    for load in (serialization.load_pem_public_key,
                 lambda b: x509.load_pem_x509_certificate(b).public_key(),
                 lambda b: serialization.load_pem_private_key(b, password=None).public_key()):
        try:
            return load(pem)
        except (ValueError, TypeError):
            continue
    raise CorimError(f"{path}: not a PEM public key, certificate or private key")


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:160]


def sign(document: bytes, key, signer: str) -> bytes:
    """A tagged COSE_Sign1 over ``document`` (detached: payload nil);
    ``key``: a PEM private key file, or a ``cryptography`` private key."""
    from cryptography.hazmat.primitives import serialization
    from pycose.keys import CoseKey
    from pycose.messages import Sign1Message

    if isinstance(key, (str, bytes)) or hasattr(key, "__fspath__"):
        _pem, key = load_private_key(key)
    alg = _algorithm_of(key)
    pkcs8 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode()
    phdr = {P.COSE_ALG: alg, P.COSE_CONTENT_TYPE: P.CORIM_CONTENT_TYPE,
            P.COSE_KID: key_id(key.public_key()), P.COSE_CWT_CLAIMS: {P.CWT_ISS: signer}}
    msg = Sign1Message(phdr=phdr, uhdr={}, payload=None)
    msg.key = CoseKey.from_pem_private_key(pkcs8)
    return msg.encode(tag=True, detached_payload=bytes(document))


def _protected(signature) -> tuple[dict, bool]:
    """The decoded protected header and whether the payload is detached;
    the envelope is checked with the same bounds as a document."""
    outer = loads(signature, "CoRIM signature")
    if not isinstance(outer, CBORTag) or outer.tag != P.TAG_COSE_SIGN1:
        raise CorimError("CoRIM signature: not a tagged COSE_Sign1 (#6.18)")
    parts = outer.value
    if not isinstance(parts, (list, tuple)) or len(parts) != 4:
        raise CorimError("CoRIM signature: a COSE_Sign1 is an array of 4 elements")
    prot, unprot, payload, sig = parts
    if not isinstance(prot, bytes) or not isinstance(unprot, dict) or not isinstance(sig, bytes):
        raise CorimError("CoRIM signature: COSE_Sign1 elements of the wrong types "
                         "(protected bstr, unprotected map, signature bstr)")
    if payload is not None and not isinstance(payload, bytes):
        raise CorimError("CoRIM signature: the payload is neither a byte string nor nil")
    header = loads(prot, "CoRIM signature protected header") if prot else {}
    if not isinstance(header, dict):
        raise CorimError("CoRIM signature: the protected header is not a map")
    return header, payload is None


def read_signature(signature) -> SignatureInfo:
    """The signature's header facts, without a key (nothing verified)."""
    header, detached = _protected(signature)
    alg = header.get(P.COSE_ALG)
    if not isinstance(alg, int) or isinstance(alg, bool) or alg not in ALGORITHMS:
        raise CorimError("CoRIM signature: protected header alg "
                         f"{alg!r:.40} is not one of " + ", ".join(ALGORITHMS.values()))
    ctype = header.get(P.COSE_CONTENT_TYPE)
    claims = header.get(P.COSE_CWT_CLAIMS)
    signer = claims.get(P.CWT_ISS) if isinstance(claims, dict) else None
    if signer is None and isinstance(header.get(P.COSE_CORIM_META), bytes):
        meta = loads(header[P.COSE_CORIM_META], "CoRIM signature corim-meta")
        signer_map = meta.get(0) if isinstance(meta, dict) else None
        signer = signer_map.get(0) if isinstance(signer_map, dict) else None
    if not isinstance(signer, str):
        raise CorimError("CoRIM signature: no signer (CWT-Claims iss or corim-meta signer-name); "
                         "draft-ietf-rats-corim-10 requires the meta group")
    kid = header.get(P.COSE_KID)
    return SignatureInfo(ALGORITHMS[alg], ctype if isinstance(ctype, str) else None, signer[:200],
                         kid.hex() if isinstance(kid, bytes) else None, detached)


def verify(signature, document: bytes, public_key_path) -> SignatureInfo:
    """Check ``signature`` over ``document`` with the key in ``public_key_path``;
    a signature that does not verify is one CorimError line."""
    from cryptography.hazmat.primitives import serialization
    from pycose.keys import CoseKey
    from pycose.messages import Sign1Message

    info = read_signature(signature)
    if info.content_type != P.CORIM_CONTENT_TYPE:
        raise CorimError(f"CoRIM signature: content-type {info.content_type!r}, not "
                         f"{P.CORIM_CONTENT_TYPE!r}")
    key = load_public_key(public_key_path)
    if ALGORITHMS[_algorithm_of(key)] != info.algorithm:
        raise CorimError(f"CoRIM signature: signed with {info.algorithm}; the key in "
                         f"{public_key_path} is for {ALGORITHMS[_algorithm_of(key)]}")
    pem = key.public_bytes(serialization.Encoding.PEM,
                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    try:
        msg = Sign1Message.decode(bytes(signature))
        msg.key = CoseKey.from_pem_public_key(pem)
        ok = msg.verify_signature(detached_payload=None if msg.payload is not None
                                  else bytes(document))
        if msg.payload is not None and msg.payload != bytes(document):
            ok = False  # an attached payload that is another document
    except Exception as exc:  # pycose raises its own and cryptography's types
        raise CorimError(f"CoRIM signature: cannot be checked: {_first_line(exc)}") from None
    if not ok:
        raise CorimError(f"CoRIM signature: does not verify with the key in {public_key_path}")
    return SignatureInfo(info.algorithm, info.content_type, info.signer, info.kid, info.detached,
                         True, str(public_key_path))


__all__ = ["ALGORITHMS", "SignatureInfo", "key_id", "load_public_key", "read_signature", "sign",
           "verify"]
