"""SEV (pre-SNP) certificates: parse, verify, and create the guest owner's GODH.

Layouts (AMD SEV API spec, appendix "Certificates"; same as virtee/sev):

- SEV certificate, 0x824 bytes: version u32 (1) | api_major u8 | api_minor u8 |
  reserved u16 | pubkey_usage u32 | pubkey_algo u32 | pubkey[0x404] |
  sig1 {usage u32, algo u32, sig[0x200]} | sig2 {same}.  The signed body is
  bytes 0x000..0x414.  ECC public key: curve u32 (1 P-256, 2 P-384) | qx[72] LE |
  qy[72] LE.  ECDSA signature: r[72] LE | s[72] LE.  RSA signature: 512-byte LE
  integer, RSA-PSS with MGF1 of the same hash and salt = hash length.
- AMD CA certificate (ARK, ASK): version u32 | key_id[16] | sig_key_id[16] |
  usage u32 | reserved[16] | pubexp_bits u32 | modulus_bits u32 | pubexp LE |
  modulus LE | signature LE (modulus_bits/8 bytes), RSA-PSS over everything
  before the signature, SHA-256 for 2048-bit and SHA-384 for 4096-bit keys.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from harness.errors import HarnessError

SEV_CERT_SIZE = 0x824
BODY_SIZE = 0x414
SIG_OFFSETS = (0x414, 0x61C)
_COORD = 72


class Usage(IntEnum):
    ARK = 0x0000
    ASK = 0x0013
    INVALID = 0x1000
    OCA = 0x1001
    PEK = 0x1002
    PDH = 0x1003
    CEK = 0x1004


class Algo(IntEnum):
    INVALID = 0x0
    RSA_SHA256 = 0x1
    ECDSA_SHA256 = 0x2
    ECDH_SHA256 = 0x3
    RSA_SHA384 = 0x101
    ECDSA_SHA384 = 0x102
    ECDH_SHA384 = 0x103


_CURVES = {1: ec.SECP256R1(), 2: ec.SECP384R1()}
_HASH = {Algo.RSA_SHA256: hashes.SHA256, Algo.ECDSA_SHA256: hashes.SHA256, Algo.ECDH_SHA256: hashes.SHA256,
         Algo.RSA_SHA384: hashes.SHA384, Algo.ECDSA_SHA384: hashes.SHA384, Algo.ECDH_SHA384: hashes.SHA384}


def _le(b: bytes) -> int:
    return int.from_bytes(b, "little")


@dataclass(frozen=True)
class Signature:
    usage: int
    algo: int
    sig: bytes

    @property
    def empty(self) -> bool:
        return self.usage == Usage.INVALID or self.algo == Algo.INVALID


@dataclass(frozen=True)
class SevCert:
    raw: bytes

    @classmethod
    def parse(cls, data: bytes, what: str = "SEV certificate") -> "SevCert":
        if len(data) < SEV_CERT_SIZE:
            raise HarnessError(f"{what} is {len(data)} bytes, expected {SEV_CERT_SIZE:#x}")
        cert = cls(bytes(data[:SEV_CERT_SIZE]))
        if cert.version != 1:
            raise HarnessError(f"{what} has version {cert.version}, expected 1")
        return cert

    @property
    def version(self) -> int:
        return struct.unpack_from("<I", self.raw, 0)[0]

    @property
    def api(self) -> tuple[int, int]:
        return self.raw[4], self.raw[5]

    @property
    def usage(self) -> int:
        return struct.unpack_from("<I", self.raw, 8)[0]

    @property
    def algo(self) -> int:
        return struct.unpack_from("<I", self.raw, 12)[0]

    @property
    def body(self) -> bytes:
        return self.raw[:BODY_SIZE]

    @property
    def signatures(self) -> tuple[Signature, Signature]:
        out = []
        for off in SIG_OFFSETS:
            usage, algo = struct.unpack_from("<II", self.raw, off)
            out.append(Signature(usage, algo, self.raw[off + 8:off + 8 + 0x200]))
        return tuple(out)  # type: ignore[return-value]

    def public_key(self):
        if self.algo in (Algo.RSA_SHA256, Algo.RSA_SHA384):
            bits = struct.unpack_from("<I", self.raw, 0x10)[0]
            n = bits // 8
            e = _le(self.raw[0x14:0x14 + 0x200])
            mod = _le(self.raw[0x214:0x214 + n])
            return rsa.RSAPublicNumbers(e, mod).public_key()
        curve = struct.unpack_from("<I", self.raw, 0x10)[0]
        if curve not in _CURVES:
            raise HarnessError(f"SEV certificate uses unknown curve id {curve}")
        size = (_CURVES[curve].key_size + 7) // 8
        x = _le(self.raw[0x14:0x14 + size])
        y = _le(self.raw[0x14 + _COORD:0x14 + _COORD + size])
        try:
            return ec.EllipticCurvePublicNumbers(x, y, _CURVES[curve]).public_key()
        except ValueError as exc:
            raise HarnessError(f"SEV certificate public key is not on its curve: {exc}") from None

    def signed_by(self, signer: "SevCert | AmdCaCert") -> bool:
        """True when one signature slot verifies with ``signer``'s key."""
        key = signer.public_key()
        for sig in self.signatures:
            if sig.empty or sig.usage != signer.usage:
                continue
            try:
                algo = Algo(sig.algo)
            except ValueError:
                continue
            h = _HASH.get(algo)
            if h is None:
                continue
            try:
                if isinstance(key, rsa.RSAPublicKey):
                    n = key.key_size // 8
                    raw = _le(sig.sig[:n]).to_bytes(n, "big")
                    key.verify(raw, self.body, padding.PSS(padding.MGF1(h()), h.digest_size), h())
                else:
                    r, s = _le(sig.sig[:_COORD]), _le(sig.sig[_COORD:2 * _COORD])
                    key.verify(encode_dss_signature(r, s), self.body, ec.ECDSA(h()))
                return True
            except InvalidSignature:
                continue
        return False


@dataclass(frozen=True)
class AmdCaCert:
    """ARK / ASK certificate."""

    raw: bytes

    @classmethod
    def parse(cls, data: bytes) -> "AmdCaCert":
        if len(data) < 64:
            raise HarnessError("AMD CA certificate too short")
        cert = cls(bytes(data))
        need = 64 + cert.pubexp_bits // 8 + 2 * (cert.modulus_bits // 8)
        if len(data) < need:
            raise HarnessError(f"AMD CA certificate is {len(data)} bytes, its key sizes need {need}")
        return cls(bytes(data[:need]))

    @property
    def key_id(self) -> bytes:
        return self.raw[4:20]

    @property
    def sig_key_id(self) -> bytes:
        return self.raw[20:36]

    @property
    def usage(self) -> int:
        return struct.unpack_from("<I", self.raw, 36)[0]

    @property
    def pubexp_bits(self) -> int:
        return struct.unpack_from("<I", self.raw, 56)[0]

    @property
    def modulus_bits(self) -> int:
        return struct.unpack_from("<I", self.raw, 60)[0]

    def _split(self):
        e_len, n_len = self.pubexp_bits // 8, self.modulus_bits // 8
        e = self.raw[64:64 + e_len]
        n = self.raw[64 + e_len:64 + e_len + n_len]
        sig = self.raw[64 + e_len + n_len:64 + e_len + 2 * n_len]
        return e, n, sig, self.raw[:64 + e_len + n_len]

    def public_key(self) -> rsa.RSAPublicKey:
        e, n, _sig, _body = self._split()
        return rsa.RSAPublicNumbers(_le(e), _le(n)).public_key()

    def signed_by(self, signer: "AmdCaCert") -> bool:
        _e, _n, sig, body = self._split()
        key = signer.public_key()
        h = hashes.SHA256 if key.key_size <= 2048 else hashes.SHA384
        n = key.key_size // 8
        try:
            key.verify(_le(sig).to_bytes(n, "big"), body, padding.PSS(padding.MGF1(h()), h.digest_size), h())
            return True
        except (InvalidSignature, ValueError):
            return False


def ecc_public_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    """The 0x404-byte ECC public key field: curve | qx[72] LE | qy[72] LE | zeros."""
    curve = {"secp256r1": 1, "secp384r1": 2}[key.curve.name]
    nums = key.public_numbers()
    out = struct.pack("<I", curve) + nums.x.to_bytes(_COORD, "little") + nums.y.to_bytes(_COORD, "little")
    return out + bytes(0x404 - len(out))


def make_godh(private_key: ec.EllipticCurvePrivateKey | None = None) -> tuple[ec.EllipticCurvePrivateKey, SevCert]:
    """A guest owner Diffie-Hellman certificate (unsigned, usage PDH, ECDH P-384).

    LAUNCH_START takes the guest owner's public DH key in this form
    (``dh-cert-file``); both signature slots are empty.
    """
    key = private_key or ec.generate_private_key(ec.SECP384R1())
    body = (struct.pack("<IBBHII", 1, 0, 0, 0, Usage.PDH, Algo.ECDH_SHA256)
            + ecc_public_bytes(key.public_key()))
    empty_sig = struct.pack("<II", Usage.INVALID, Algo.INVALID) + bytes(0x200)
    return key, SevCert.parse(body + empty_sig * 2)


def split_cert_chain(blob: bytes) -> list[SevCert]:
    """``query-sev-capabilities`` cert-chain: PEK | OCA | CEK, 0x824 bytes each."""
    if len(blob) % SEV_CERT_SIZE:
        raise HarnessError(f"SEV cert chain of {len(blob)} bytes is not a multiple of {SEV_CERT_SIZE:#x}")
    return [SevCert.parse(blob[i:i + SEV_CERT_SIZE]) for i in range(0, len(blob), SEV_CERT_SIZE)]
