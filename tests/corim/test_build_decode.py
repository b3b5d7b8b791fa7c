"""The Launch Measurement CoRIM: built by cbor2 to the profile, byte-equal to the
igvm crate's, and decoded back with every profile constraint enforced.

Expected bytes come from the igvm crate 0.5 (vectors/igvm_crate_0.5.0.json,
its provenance inside), never from this code; the tag-ids from the crate's
own precomputed constants; the structure from the profile's text."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import cbor2
import pytest

from harness.corim import build, decode, profile as P
from harness.corim.cbor import CorimError, loads
from harness.igvm.defs import PlatformType
from harness.igvm.limits import MAX_CORIM_BYTES, MAX_CORIM_DEPTH
from tests.corim.fixtures import small_snp_file

VECTORS = json.loads((Path(__file__).parent / "vectors" / "igvm_crate_0.5.0.json").read_text())
DIGEST = bytes.fromhex(VECTORS["crate_snp_digest"])


def test_fixture_is_the_one_the_vectors_were_made_from():
    assert hashlib.sha256(small_snp_file()).hexdigest() == VECTORS["fixture_sha256"]


@pytest.mark.parametrize("entry", VECTORS["corims"], ids=lambda e: f"svn{e['svn']}")
def test_byte_identical_to_the_igvm_crate(entry):
    """Same digest and SVN: the same bytes as IgvmSerializer::add_corim."""
    assert build.build(PlatformType.SEV_SNP, DIGEST, entry["svn"]) == bytes.fromhex(entry["cbor"])


def test_tag_ids_equal_the_crates_precomputed_values():
    ids = {e.name: e.tag_id for e in P.ENVIRONMENTS.values()}
    assert ids == {k: v for k, v in VECTORS["tag_ids"].items() if not k.startswith("_")}
    # and they are RFC 9562 version-5 UUIDs (version nibble 5, variant 10xx)
    for text in ids.values():
        u = uuid.UUID(text)
        assert u.version == 5 and u.variant == uuid.RFC_4122


def test_structure_is_the_profiles():
    """Read with plain cbor2, key by key, against the profile's description."""
    doc = cbor2.loads(build.build(PlatformType.SEV_SNP, DIGEST, 9))
    assert doc.tag == 501
    corim = doc.value
    assert list(corim) == [0, 1, 3]
    assert corim[0] == "AMD/SEV-SNP/launch-measurement"
    assert corim[3] == "tag:microsoft.com,2026:launch-measurement/v1"
    (tag,) = corim[1]
    assert tag.tag == 506
    comid = cbor2.loads(tag.value)
    assert comid[1] == {0: "77e8061e-4634-5e53-a848-d1d09e996843"}
    env = {0: {1: "AMD", 2: "SEV-SNP"}}
    meas = {0: "MEASUREMENT", 1: {2: [[7, DIGEST]]}}
    assert comid[4][0] == [[env, [meas]]]
    (ces,) = comid[4][8]
    assert ces[0] == [env, []]
    (series,) = ces[1]
    assert series[0] == [meas]
    assert series[1] == [{1: {1: cbor2.CBORTag(552, 9)}}]


def test_deterministic_and_digest_sensitive():
    a = build.build(PlatformType.SEV_SNP, DIGEST, 1)
    assert a == build.build(PlatformType.SEV_SNP, DIGEST, 1)
    assert a != build.build(PlatformType.SEV_SNP, bytes(48), 1)


@pytest.mark.parametrize("platform,length", [(PlatformType.TDX, 48), (PlatformType.VSM_ISOLATION, 32)])
def test_other_environments_round_trip(platform, length):
    digest = hashlib.sha384(b"x").digest()[:length]
    got = decode.decode(build.build(platform, digest, 3))
    env = P.ENVIRONMENTS[platform]
    assert (got.vendor, got.model, got.mkey, got.digest, got.svn) == (env.vendor, env.model, env.mkey,
                                                                      digest, 3)


@pytest.mark.parametrize("platform", [PlatformType.SEV, PlatformType.SEV_ES, PlatformType.NATIVE])
def test_platforms_without_an_environment_are_refused(platform):
    with pytest.raises(CorimError, match="no environment"):
        build.build(platform, bytes(48))


def test_wrong_digest_length_and_svn_refused():
    with pytest.raises(CorimError, match="48 bytes"):
        build.build(PlatformType.SEV_SNP, bytes(32))
    with pytest.raises(CorimError, match="64-bit"):
        build.build(PlatformType.SEV_SNP, DIGEST, 1 << 64)


def test_decode_round_trip_and_the_crates_documents():
    for entry in VECTORS["corims"]:
        got = decode.decode(bytes.fromhex(entry["cbor"]))
        assert (got.platform, got.digest, got.svn, got.hash_alg) == (PlatformType.SEV_SNP, DIGEST,
                                                                     entry["svn"], 7)


# ------------------------------------------------------------- constraints
def _doc(svn=5):
    return cbor2.loads(build.build(PlatformType.SEV_SNP, DIGEST, svn))


def _with_comid(edit):
    doc = _doc()
    comid = cbor2.loads(doc.value[1][0].value)
    edit(comid)
    doc.value[1][0] = cbor2.CBORTag(506, cbor2.dumps(comid))
    return cbor2.dumps(doc)


def _with_corim(edit):
    doc = _doc()
    edit(doc.value)
    return cbor2.dumps(doc)


def _ces(c):
    return c[4][8][0]


BROKEN = {
    "no profile": (_with_corim(lambda c: c.pop(3)), "no profile"),
    "other profile": (_with_corim(lambda c: c.__setitem__(3, "tag:example.com,2026:x")), "profile"),
    "two tags": (_with_corim(lambda c: c[1].append(c[1][0])), "exactly one CoMID"),
    "untagged CoMID": (_with_corim(lambda c: c[1].__setitem__(0, c[1][0].value)), "tag 506"),
    "not tag 501": (cbor2.dumps(_doc().value), "tag 501"),
    "min svn": (_with_comid(lambda c: _ces(c)[1][0][1][0][1].__setitem__(1, cbor2.CBORTag(553, 5))),
                "minimum SVN"),
    "untagged svn": (_with_comid(lambda c: _ces(c)[1][0][1][0][1].__setitem__(1, 5)), "tag 552"),
    "tag-id": (_with_comid(lambda c: c[1].__setitem__(0, str(uuid.uuid4()))), "tag-id"),
    "sha-256 alg": (_with_comid(lambda c: c[4][0][0][1][0][1][2][0].__setitem__(0, 1)), "algorithm"),
    "short digest": (_with_comid(lambda c: c[4][0][0][1][0][1][2][0].__setitem__(1, bytes(32))),
                     "48 bytes"),
    "vendor": (_with_comid(lambda c: c[4][0][0][0][0].__setitem__(1, "Acme")), "vendor/model"),
    "mkey": (_with_comid(lambda c: c[4][0][0][1][0].__setitem__(0, "MRTD")), "mkey"),
    "no CES": (_with_comid(lambda c: c[4].pop(8)), "key 8"),
    "no reference": (_with_comid(lambda c: c[4].pop(0)), "key 0"),
    "claims": (_with_comid(lambda c: _ces(c)[0].__setitem__(1, [{0: "x"}])), "claims"),
    "other selection": (_with_comid(lambda c: _ces(c)[1][0][0][0][1][2][0].__setitem__(1, bytes(48))),
                        "selection"),
    "extra key": (_with_comid(lambda c: c[4].__setitem__(1, [])), "not used by the profile"),
    "trailing byte": (build.build(PlatformType.SEV_SNP, DIGEST) + b"\x00", "after the CBOR item"),
    "truncated": (build.build(PlatformType.SEV_SNP, DIGEST)[:-3], "not CBOR"),
    "empty": (b"", "empty"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_profile_constraints(name):
    data, message = BROKEN[name]
    with pytest.raises(CorimError, match=message):
        decode.decode(data)


def test_size_bound_before_decoding():
    big = cbor2.dumps(cbor2.CBORTag(501, {0: "x" * MAX_CORIM_BYTES}))
    with pytest.raises(CorimError, match="the limit is"):
        decode.decode(big)


def test_depth_bound():
    deep = b"\x81" * (MAX_CORIM_DEPTH + 1) + b"\x00"
    with pytest.raises(CorimError, match="nested"):
        loads(deep)
    ok = b"\x81" * (MAX_CORIM_DEPTH - 1) + b"\x00"
    assert loads(ok) is not None


def test_the_profiles_deepest_value_is_within_the_depth_bound():
    from harness.corim.cbor import nesting
    doc = loads(build.build(PlatformType.SEV_SNP, DIGEST))
    assert nesting(doc) + nesting(loads(doc.value[1][0].value)) <= MAX_CORIM_DEPTH


def test_cyclic_and_exotic_values_are_refused_not_used():
    cyclic = bytes.fromhex("d81c81d81d00")           # shareable array holding itself
    regex = cbor2.dumps(cbor2.CBORTag(35, "(a+)+$"))
    for data in (cyclic, regex, cbor2.dumps(cbor2.CBORTag(501, {0: cbor2.CBORTag(2, b"\xff" * 4000)}))):
        with pytest.raises(CorimError):
            decode.decode(data)
