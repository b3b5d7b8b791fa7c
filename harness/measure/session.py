"""The guest owner's SEV launch session (AMD SEV API spec, LAUNCH_START; "Key Agreement").

The guest owner creates an ECDH P-384 key pair (its GODH certificate, passed
to QEMU as ``dh-cert-file``), agrees a shared secret Z with the platform's PDH
(from ``query-sev-capabilities``), and derives keys with the NIST SP 800-108
counter-mode KDF (HMAC-SHA256):

    master = KDF(Z, label "sev-master-secret", context = nonce)
    KEK = KDF(master, "sev-kek"),  KIK = KDF(master, "sev-kik")
    wrap_tk   = AES-128-CTR(KEK, wrap_iv, TEK || TIK)
    wrap_mac  = HMAC-SHA256(KIK, wrap_tk)
    policy_mac = HMAC-SHA256(TIK, policy (le32))

The session blob (``session-file``, base64) is
``nonce[16] | wrap_tk[32] | wrap_iv[16] | wrap_mac[32] | policy_mac[32]``.
Z is the big-endian x coordinate returned by standard ECDH, as used by
virtee/sev (src/certs/sev/crypto.rs PrivateKey::derive), the library behind sevctl.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from harness.errors import HarnessError
from harness.measure.certs import SevCert, Usage, make_godh
from harness.measure.measure_sev import LaunchMeasurement, check_launch_measure

SESSION_BLOB_SIZE = 128


def kdf(key: bytes, size: int, context: bytes, label: str) -> bytes:
    """SP 800-108 counter mode: HMAC(key, u32le(i) || label || 0x00 || context || u32le(bits))."""
    out = b""
    i = 1
    bits = struct.pack("<I", size * 8)
    while len(out) < size:
        out += hmac.new(key, struct.pack("<I", i) + label.encode() + b"\0" + context + bits,
                        hashlib.sha256).digest()
        i += 1
    return out[:size]


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def aes128_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return enc.update(data) + enc.finalize()


@dataclass(frozen=True)
class SessionBlob:
    nonce: bytes
    wrap_tk: bytes
    wrap_iv: bytes
    wrap_mac: bytes
    policy_mac: bytes

    def to_bytes(self) -> bytes:
        return self.nonce + self.wrap_tk + self.wrap_iv + self.wrap_mac + self.policy_mac

    def to_base64(self) -> str:
        return base64.b64encode(self.to_bytes()).decode()


def session_blob(z: bytes, nonce: bytes, wrap_iv: bytes, tek: bytes, tik: bytes, policy: int) -> SessionBlob:
    """The LAUNCH_START session structure for shared secret ``z``."""
    for name, value, n in (("nonce", nonce, 16), ("wrap_iv", wrap_iv, 16), ("TEK", tek, 16), ("TIK", tik, 16)):
        if len(value) != n:
            raise HarnessError(f"{name} must be {n} bytes")
    master = kdf(z, 16, nonce, "sev-master-secret")
    kek = kdf(master, 16, b"", "sev-kek")
    kik = kdf(master, 16, b"", "sev-kik")
    wrap_tk = aes128_ctr(kek, wrap_iv, tek + tik)
    return SessionBlob(nonce, wrap_tk, wrap_iv, hmac_sha256(kik, wrap_tk),
                       hmac_sha256(tik, struct.pack("<I", policy & 0xFFFFFFFF)))


@dataclass
class LaunchSession:
    """A guest owner's session with one platform: keys, GODH certificate, blob."""

    policy: int
    tek: bytes
    tik: bytes
    godh: SevCert
    blob: SessionBlob
    _private: ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def create(cls, pdh: SevCert, policy: int, *, tek: bytes | None = None, tik: bytes | None = None,
               nonce: bytes | None = None, wrap_iv: bytes | None = None,
               private_key: ec.EllipticCurvePrivateKey | None = None) -> "LaunchSession":
        if pdh.usage != Usage.PDH:
            raise HarnessError(f"the platform certificate has usage {pdh.usage:#x}, not PDH (0x1003)")
        pub = pdh.public_key()
        if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.curve.name != "secp384r1":
            raise HarnessError("the platform PDH is not an ECDH P-384 key")
        priv, godh = make_godh(private_key)
        z = priv.exchange(ec.ECDH(), pub)
        tek = tek or os.urandom(16)
        tik = tik or os.urandom(16)
        blob = session_blob(z, nonce or os.urandom(16), wrap_iv or os.urandom(16), tek, tik, policy)
        return cls(policy, tek, tik, godh, blob, priv)

    def godh_base64(self) -> str:
        return base64.b64encode(self.godh.raw).decode()

    def write_files(self, directory: str) -> tuple[str, str]:
        """Write ``godh.b64`` and ``session.b64`` (QEMU reads both as base64 text)."""
        dh = os.path.join(directory, "godh.b64")
        ss = os.path.join(directory, "session.b64")
        for path, text in ((dh, self.godh_base64()), (ss, self.blob.to_base64())):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
        return dh, ss

    def check_measurement(self, api_major: int, api_minor: int, build: int, digest: bytes,
                          observed: LaunchMeasurement) -> bool:
        return check_launch_measure(self.tik, api_major, api_minor, build, self.policy, digest, observed)
