"""SNP ID block / ID auth against sev-snp-measure's known answers and the ABI layout."""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from harness.igvm.builder import IgvmBuilder, serialize
from harness.igvm.defs import PlatformType
from harness.igvm import model as m
from harness.igvm.parser import parse
from harness.measure import idblock
from harness.measure.launch import predict
from tests.measure.conftest import b64, load_vector


def _keys(v):
    load = lambda pem: serialization.load_pem_private_key(pem.encode(), None)  # noqa: E731
    return load(v["id_key_pem"]), load(v["author_key_pem"])


def test_id_block_bytes_kat():
    v = load_vector("ssm_id_block_kat.json")
    assert idblock.id_block(b64(v["ld_b64"]), 0x30000) == b64(v["expected_id_block_b64"])


def test_key_digests_kat():
    v = load_vector("ssm_id_block_kat.json")
    idk, ak = _keys(v)
    assert idblock.key_digest(idk) == b64(v["expected_id_key_hash_b64"])
    assert idblock.key_digest(ak) == b64(v["expected_author_key_hash_b64"])


def _verify_le(pub, sig: bytes, data: bytes) -> None:
    r, s = int.from_bytes(sig[:72], "little"), int.from_bytes(sig[72:144], "little")
    pub.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA384()))


def test_id_auth_layout_and_signatures():
    """Offsets restated from the ABI layout in the vector file; signatures checked with cryptography."""
    v = load_vector("ssm_id_block_kat.json")
    idk, ak = _keys(v)
    block = b64(v["expected_id_block_b64"])
    auth = idblock.id_auth(block, idk, ak)
    assert len(auth) == 4096
    assert struct.unpack_from("<II", auth, 0) == (1, 1)
    id_sig = auth[4 + 4 + 56:][:512]
    id_key = auth[0x40 + 512:][:1028]
    id_key_sig = auth[0x40 + 512 + 1028 + 60:][:512]
    author = auth[0x40 + 512 + 1028 + 60 + 512:][:1028]
    assert id_key[:4] == b"\x02\0\0\0" and author[:4] == b"\x02\0\0\0"
    assert int.from_bytes(id_key[4:76], "little") == idk.public_key().public_numbers().x
    _verify_le(idk.public_key(), id_sig, block)
    _verify_le(ak.public_key(), id_key_sig, id_key)
    assert not any(auth[0x40 + 512 + 1028:][:60])  # reserved
    assert idblock.check_id_auth(block, auth)
    tampered = bytearray(block)
    tampered[0] ^= 1
    assert not idblock.check_id_auth(bytes(tampered), auth)


def test_id_block_in_igvm_roundtrip_as_qemu_reads_it():
    """add_to_igvm -> serialize -> parse -> QEMU's reconstruction == the signed structures."""
    b = IgvmBuilder()
    mask = b.platform(PlatformType.SEV_SNP)
    b.pages(0x100000, b"\x5a" * 8192)
    f = b.model()
    pred = predict(f, "sev-snp", 1)
    keys = idblock.IdKeys.generate(author=True)
    block, auth = idblock.add_to_igvm(f, mask, pred.digest, 0x30000, keys)
    g = parse(serialize(f))
    d = next(x for x in g.directives if isinstance(x, m.SnpIdBlock))
    pol = next(x for x in g.initializations if isinstance(x, m.GuestPolicy)).policy
    assert idblock.qemu_id_block_from_igvm(d, pol) == block
    assert idblock.qemu_id_auth_from_igvm(d) == auth
    p2 = predict(g, "sev-snp", 1)
    assert p2.digest == pred.digest and p2.as_dict()["id_block_matches"] is True
