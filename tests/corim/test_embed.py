"""CoRIM headers in IGVM files: attached by the builder, found and checked with the
igvm crate's corim-feature rules; the crate's SNP model against the crate's digest,
asked live (tools/igvm-oracle ``snp-digest``)."""

from __future__ import annotations

import hashlib
import struct

import pytest

from harness.corim import build, embed, sign
from harness.igvm import defs, parser
from harness.igvm import model as m
from harness.igvm.builder import serialize
from harness.igvm.defs import OPTIONAL_BIT, PlatformType
from harness.measure import launch, reference
from tests.corim.fixtures import small_snp_file

DOC = build.build(PlatformType.SEV_SNP, hashlib.sha384(b"d").digest(), 4)


def _types(data: bytes) -> list[int]:
    f, _ = parser.scan(data)
    return [h.header_type for h in f.headers()]


@pytest.mark.parametrize("optional", [False, True])
def test_attach_and_read_back(optional, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP384R1())
    sig = sign.sign(DOC, key, "ACME")
    out = embed.attach(small_snp_file(), [(PlatformType.SEV_SNP, DOC, sig)], optional=optional)
    bit = OPTIONAL_BIT if optional else 0
    types = _types(out)
    # after the existing initialization header (GUEST_POLICY), document then signature
    assert types[1:4] == [0x101, 0x104 | bit, 0x105 | bit]
    found = embed.read(parser.parse(out, check=False))
    assert not found.failed, found.lines()
    (p,) = found.platforms
    assert p.corim.digest == hashlib.sha384(b"d").digest() and p.corim.svn == 4
    assert p.document.optional is optional and p.signature_info.signer == "ACME"
    # the page data is untouched: the launch digest is the same as without the headers
    f, headers = embed.load_measurable(out)
    assert len(headers) == 2
    assert launch.predict(f, "sev-snp", 1).digest == \
        launch.predict(parser.parse(small_snp_file()), "sev-snp", 1).digest


def _file_with(*inits: m.Header) -> bytes:
    f = parser.parse(small_snp_file()).materialize()
    f.initializations = list(f.initializations) + list(inits)
    return serialize(f)


def _problems(data: bytes) -> list[str]:
    found = embed.read(parser.parse(data, check=False))
    return found.problems + [p.error for p in found.platforms if p.error]


@pytest.mark.parametrize("inits,message", [
    ((m.CorimDocument(1, DOC), m.CorimDocument(1, DOC)), "a second CoRIM document"),
    ((m.CorimSignature(1, b"\xd2"),), "MissingCorimDocument"),
    ((m.CorimDocument(1, DOC), m.CorimSignature(1, b"x"), m.CorimSignature(1, b"y")),
     "a second CoRIM signature"),
    ((m.CorimDocument(1, DOC, reserved=1),), "reserved"),
    ((m.CorimDocument(2, DOC),), "names no declared platform"),
    ((m.CorimDocument(1, b"\xa0"),), "tag 501"),
    ((m.CorimDocument(1, build.build(PlatformType.TDX, bytes(48))),), "Intel/TDX"),
])
def test_the_crates_rules_and_the_profile(inits, message):
    assert any(message in p for p in _problems(_file_with(*inits))), _problems(_file_with(*inits))


def _patch_corim_data(data: bytes, **fields) -> bytes:
    """Rewrite the first CORIM_DATA body (by hand, from igvm_defs' layout) and the checksum."""
    import zlib
    buf = bytearray(data)
    f, _ = parser.scan(data)
    pos = next(f.initializations.offset(i) for i, h in enumerate(f.initializations)
               if h.header_type == 0x104)
    body = defs.CORIM_DATA.unpack(buf, pos + 8)
    body.update(fields)
    buf[pos + 8:pos + 24] = struct.pack("<4I", body["compatibility_mask"], body["file_offset"],
                                        body["size_bytes"], body["reserved"])
    vho, vhs = struct.unpack_from("<II", buf, 8)
    buf[20:24] = bytes(4)
    crc = zlib.crc32(bytes(buf[vho:vho + vhs]), zlib.crc32(bytes(buf[:24])))
    buf[20:24] = struct.pack("<I", crc)
    return bytes(buf)


def test_file_data_out_of_range_and_oversize():
    base = _file_with(m.CorimDocument(1, DOC))
    assert any("outside the file data section" in p
               for p in _problems(_patch_corim_data(base, size_bytes=len(base))))
    assert any("outside the file data section" in p
               for p in _problems(_patch_corim_data(base, file_offset=8)))


@pytest.fixture(scope="module")
def crate_digest(oracle_binary) -> bytes:
    """The igvm crate's SNP launch digest of small_snp_file (what add_corim would embed)."""
    from harness.reference import oracle
    (answer,) = oracle.snp_digest_bytes({"small": small_snp_file()}).values()
    return bytes.fromhex(answer["digest"])


def test_crate_model_equals_the_igvm_crates_digest(crate_digest):
    """harness.measure.reference.crate_model against the digest the crate itself computed."""
    f = parser.parse(small_snp_file())
    assert reference.crate_model(f)[0] == crate_digest


def test_crate_digest_is_not_qemus_and_the_difference_is_explained(crate_digest):
    f = parser.parse(small_snp_file())
    crate = crate_digest
    res = reference.check(f, crate, 1)
    assert not res.equal and "igvm crate" in res.model
    # Same pages and VMSA (sev-snp-measure's reset save area is what KVM builds),
    # but another order: QEMU measures the parameter insert as soon as it meets it,
    # before the run of pages still pending (backends/igvm.c
    # qigvm_directive_parameter_insert vs qigvm_process_mem_page); the crate in
    # file order.
    x = res.explanation
    assert x.ranges == [] and x.vmsas == [] and x.first_order_difference is not None, res.lines
    assert reference.check(f, res.predicted.digest, 1).equal
