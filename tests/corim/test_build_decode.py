"""The Launch Measurement CoRIM: built by cbor2 to the profile and decoded back with
every profile constraint enforced.

The structure comes from the profile's text, read key by key with plain cbor2;
the bytes are compared with the igvm crate's own, asked live, in
test_crate_corim.py (with the tag-ids and the crate's documents decoded here)."""

from __future__ import annotations

import hashlib
import uuid

import cbor2
import pytest

from harness.corim import build, decode, profile as P
from harness.corim.cbor import CorimError, loads
from harness.igvm.defs import PlatformType
from harness.igvm.limits import MAX_CORIM_BYTES, MAX_CORIM_DEPTH
from tests.corim.fixtures import small_snp_file

DIGEST = hashlib.sha384(small_snp_file()).digest()  # any 48 bytes: the structure is the test


def test_tag_ids_are_version_5_uuids_of_the_profiles_namespace():
    """RFC 9562 section 5.5 (version nibble 5, variant 10xx), lowercase text."""
    for env in P.ENVIRONMENTS.values():
        u = uuid.UUID(env.tag_id)
        assert u.version == 5 and u.variant == uuid.RFC_4122 and env.tag_id == env.tag_id.lower()


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


@pytest.mark.parametrize("svn", [0, 1, 24, (1 << 64) - 1])
def test_decode_round_trip(svn):
    got = decode.decode(build.build(PlatformType.SEV_SNP, DIGEST, svn))
    assert (got.platform, got.digest, got.svn, got.hash_alg) == (PlatformType.SEV_SNP, DIGEST, svn, 7)


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
