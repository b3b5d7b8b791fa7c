"""SEV-SNP ID block and ID authentication structure, signed with harness keys.

SEV-SNP Firmware ABI spec, SNP_LAUNCH_FINISH ("ID_BLOCK", "ID_AUTH_INFO"):

- ID block, 96 bytes: LD[48] | FAMILY_ID[16] | IMAGE_ID[16] | VERSION u32 (1) |
  GUEST_SVN u32 | POLICY u64.  LAUNCH_FINISH fails unless LD equals the launch
  digest and POLICY equals the guest policy.
- Public key, 1028 bytes: CURVE u32 (2 = P-384) | QX[72] LE | QY[72] LE | zeros.
- Signature, 512 bytes: R[72] LE | S[72] LE | zeros (ECDSA P-384 with SHA-384).
- ID auth, 4096 bytes: ID_KEY_ALGO u32 (1) | AUTH_KEY_ALGO u32 | rsvd[56] |
  ID_BLOCK_SIG[512] | ID_KEY[1028] | rsvd[60] | ID_KEY_SIG[512] (author key over
  ID_KEY) | AUTHOR_KEY[1028] | rsvd[892].

With an IGVM file QEMU takes the ID block from the file's SNP_ID_BLOCK
directive (backends/igvm.c: qigvm_directive_snp_id_block) and
cgs_set_guest_policy *discards* any ``id-block``/``id-auth`` given on the
``sev-snp-guest`` object; the block's POLICY is the file's GUEST_POLICY.
:func:`add_to_igvm` therefore writes the block into the model.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.exceptions import InvalidSignature

from harness.errors import HarnessError

ID_BLOCK_SIZE = 96
ID_AUTH_SIZE = 4096
PUBKEY_SIZE = 1028
SIG_SIZE = 512
CURVE_P384 = 2
ALGO_ECDSA_P384_SHA384 = 1
_C = 72
# ID auth offsets
OFF_ID_SIG, OFF_ID_KEY, OFF_ID_KEY_SIG, OFF_AUTHOR_KEY = 0x40, 0x240, 0x680, 0x880


def id_block(ld: bytes, policy: int, family_id: bytes = bytes(16), image_id: bytes = bytes(16),
             guest_svn: int = 0, version: int = 1) -> bytes:
    if len(ld) != 48 or len(family_id) != 16 or len(image_id) != 16:
        raise HarnessError("ID block: LD must be 48 bytes, family and image IDs 16 bytes")
    return ld + family_id + image_id + struct.pack("<IIQ", version, guest_svn, policy)


def public_key_struct(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    if pub.curve.name != "secp384r1":
        raise HarnessError("SNP ID and author keys must be ECDSA P-384")
    n = pub.public_numbers()
    raw = struct.pack("<I", CURVE_P384) + n.x.to_bytes(_C, "little") + n.y.to_bytes(_C, "little")
    return raw + bytes(PUBKEY_SIZE - len(raw))


def key_digest(key) -> bytes:
    """SHA-384 of the public key structure (ID_KEY_DIGEST / AUTHOR_KEY_DIGEST in the report)."""
    return hashlib.sha384(public_key_struct(key)).digest()


def sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA384())))
    raw = r.to_bytes(_C, "little") + s.to_bytes(_C, "little")
    return raw + bytes(SIG_SIZE - len(raw))


def verify(pubkey_struct: bytes, sig: bytes, data: bytes) -> bool:
    curve = struct.unpack_from("<I", pubkey_struct)[0]
    if curve != CURVE_P384:
        return False
    x = int.from_bytes(pubkey_struct[4:4 + _C], "little")
    y = int.from_bytes(pubkey_struct[4 + _C:4 + 2 * _C], "little")
    try:
        pub = ec.EllipticCurvePublicNumbers(x, y, ec.SECP384R1()).public_key()
        r, s = int.from_bytes(sig[:_C], "little"), int.from_bytes(sig[_C:2 * _C], "little")
        pub.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA384()))
        return True
    except (InvalidSignature, ValueError):
        return False


def id_auth(block: bytes, id_key: ec.EllipticCurvePrivateKey,
            author_key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    if len(block) != ID_BLOCK_SIZE:
        raise HarnessError(f"ID block must be {ID_BLOCK_SIZE} bytes")
    out = bytearray(ID_AUTH_SIZE)
    struct.pack_into("<II", out, 0, ALGO_ECDSA_P384_SHA384, ALGO_ECDSA_P384_SHA384 if author_key else 0)
    out[OFF_ID_SIG:OFF_ID_SIG + SIG_SIZE] = sign(id_key, block)
    idk = public_key_struct(id_key)
    out[OFF_ID_KEY:OFF_ID_KEY + PUBKEY_SIZE] = idk
    if author_key is not None:
        out[OFF_ID_KEY_SIG:OFF_ID_KEY_SIG + SIG_SIZE] = sign(author_key, idk)
        out[OFF_AUTHOR_KEY:OFF_AUTHOR_KEY + PUBKEY_SIZE] = public_key_struct(author_key)
    return bytes(out)


def check_id_auth(block: bytes, auth: bytes) -> bool:
    """What the firmware checks of the signatures (not LD/policy)."""
    idk = auth[OFF_ID_KEY:OFF_ID_KEY + PUBKEY_SIZE]
    ok = verify(idk, auth[OFF_ID_SIG:OFF_ID_SIG + SIG_SIZE], block)
    if struct.unpack_from("<I", auth, 4)[0]:
        ok = ok and verify(auth[OFF_AUTHOR_KEY:OFF_AUTHOR_KEY + PUBKEY_SIZE],
                           auth[OFF_ID_KEY_SIG:OFF_ID_KEY_SIG + SIG_SIZE], idk)
    return ok


@dataclass
class IdKeys:
    id_key: ec.EllipticCurvePrivateKey
    author_key: ec.EllipticCurvePrivateKey | None = None

    @classmethod
    def generate(cls, author: bool = True) -> "IdKeys":
        return cls(ec.generate_private_key(ec.SECP384R1()),
                   ec.generate_private_key(ec.SECP384R1()) if author else None)


def qemu_properties(block: bytes, auth: bytes) -> dict:
    """``sev-snp-guest`` properties for a launch *without* IGVM (see module doc)."""
    return {"id-block": base64.b64encode(block).decode(), "id-auth": base64.b64encode(auth).decode(),
            "author-key-enabled": bool(struct.unpack_from("<I", auth, 4)[0])}


def igvm_fields(block: bytes, auth: bytes) -> dict:
    """The SNP_ID_BLOCK directive fields (harness.igvm.model.SnpIdBlock) for ``block``/``auth``."""
    ld, fam, img = block[:48], block[48:64], block[64:80]
    version, svn, _policy = struct.unpack_from("<IIQ", block, 80)
    id_algo, auth_algo = struct.unpack_from("<II", auth, 0)
    idk, ak = auth[OFF_ID_KEY:OFF_ID_KEY + PUBKEY_SIZE], auth[OFF_AUTHOR_KEY:OFF_AUTHOR_KEY + PUBKEY_SIZE]
    s1, s2 = auth[OFF_ID_SIG:], auth[OFF_ID_KEY_SIG:]
    return dict(
        author_key_enabled=1 if auth_algo else 0, ld=ld, family_id=fam, image_id=img, version=version,
        guest_svn=svn, id_key_algorithm=id_algo, author_key_algorithm=auth_algo,
        id_key_signature_r=s1[:_C], id_key_signature_s=s1[_C:2 * _C],
        id_public_key_curve=struct.unpack_from("<I", idk)[0], id_public_key_qx=idk[4:4 + _C],
        id_public_key_qy=idk[4 + _C:4 + 2 * _C],
        author_key_signature_r=s2[:_C], author_key_signature_s=s2[_C:2 * _C],
        author_public_key_curve=struct.unpack_from("<I", ak)[0], author_public_key_qx=ak[4:4 + _C],
        author_public_key_qy=ak[4 + _C:4 + 2 * _C])


def add_to_igvm(f, mask: int, digest: bytes, policy: int, keys: IdKeys, **block_args):
    """Put a signed ID block for ``digest`` and a GUEST_POLICY into IGVM model ``f`` (in place).

    Existing SNP_ID_BLOCK directives and GUEST_POLICY headers for ``mask`` are
    replaced.  Neither is measured, so the digest stays valid.
    """
    from harness.igvm import model as m

    block = id_block(digest, policy, **block_args)
    auth = id_auth(block, keys.id_key, keys.author_key)
    f.directives = [d for d in f.directives
                    if not (isinstance(d, m.SnpIdBlock) and d.compatibility_mask & mask)]
    f.initializations = [h for h in f.initializations
                         if not (isinstance(h, m.GuestPolicy) and h.compatibility_mask & mask)]
    f.directives.append(m.SnpIdBlock(compatibility_mask=mask, **igvm_fields(block, auth)))
    f.initializations.append(m.GuestPolicy(policy=policy, compatibility_mask=mask))
    return block, auth


def qemu_id_auth_from_igvm(d) -> bytes:
    """Rebuild the ID auth QEMU passes to KVM from an SNP_ID_BLOCK directive
    (backends/igvm.c: qigvm_directive_snp_id_block)."""
    out = bytearray(ID_AUTH_SIZE)
    struct.pack_into("<II", out, 0, d.id_key_algorithm, d.author_key_algorithm)
    out[OFF_ID_SIG:OFF_ID_SIG + 2 * _C] = bytes(d.id_key_signature_r) + bytes(d.id_key_signature_s)
    struct.pack_into("<I", out, OFF_ID_KEY, d.id_public_key_curve)
    out[OFF_ID_KEY + 4:OFF_ID_KEY + 4 + 2 * _C] = bytes(d.id_public_key_qx) + bytes(d.id_public_key_qy)
    out[OFF_ID_KEY_SIG:OFF_ID_KEY_SIG + 2 * _C] = bytes(d.author_key_signature_r) + bytes(d.author_key_signature_s)
    struct.pack_into("<I", out, OFF_AUTHOR_KEY, d.author_public_key_curve)
    out[OFF_AUTHOR_KEY + 4:OFF_AUTHOR_KEY + 4 + 2 * _C] = (bytes(d.author_public_key_qx)
                                                          + bytes(d.author_public_key_qy))
    return bytes(out)


def qemu_id_block_from_igvm(d, policy: int) -> bytes:
    """The ID block QEMU builds: VERSION forced to 1, POLICY from GUEST_POLICY."""
    return id_block(bytes(d.ld), policy, bytes(d.family_id), bytes(d.image_id), d.guest_svn, 1)
