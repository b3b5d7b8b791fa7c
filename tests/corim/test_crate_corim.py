"""Our Launch Measurement CoRIM against the igvm crate's, asked live (tools/igvm-oracle
``corim``, the crate 0.5 from crates.io built by set-up).

* **Byte-equal.** For each file of ``digest_variety`` (SNP on two masks, TDX,
  VBS: seven digests) the crate measures the file and builds its CoRIM
  (``IgvmSerializer::add_corim``); ``harness.corim.build`` given the crate's
  digest and the same SVN writes the same bytes -- for SVNs at every CBOR
  integer width (RFC 8949 section 3.1: the argument grows at 24, 2^8, 2^16,
  2^32), 0 and 2^64 - 1 included.  The crate's public API builds a CoRIM only
  from a file it measured, so the digests are its measurements.
* **Accepted.** The CoRIM library the crate builds with (``corim`` 0.1.4,
  ``validate::decode_and_validate_full_at``) accepts ours and reads back the
  values we wrote; its appraisal (draft-ietf-rats-corim-10 section 9.3:
  reference values, then the conditional endorsement series) of the same
  digest endorses our SVN, of another digest nothing.  What it refuses of our
  decoder's refusals, and why the rest is the profile's alone, is a table.
* **Signature.** It decodes our COSE_Sign1 envelope (alg, content type,
  signer, kid, detached payload), validates the envelope's payload, and the
  Sig_structure it builds for the document (RFC 9052 section 4.4) is what our
  signature verifies over (checked with ``cryptography``).

The igvm crate 0.5 itself validates no CoRIM payload (``igvm/src/lib.rs``:
"TODO: validate CoRIM document has the minimum fields required"); its CoRIM
library knows no profile.  Skips, where crates.io is unreachable, name it.
"""

from __future__ import annotations

import hashlib
import uuid

import cbor2
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from harness.corim import build, decode, profile as P, sign
from harness.reference import oracle
from tests.corim.fixtures import digest_variety
from tests.corim.test_build_decode import BROKEN
from tests.corim.test_sign import KEYS, _write_keys
from tests.reference.conftest import record_counts

SVNS = [0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1]
PLATFORMS = {name: pt for pt, name in P.PLATFORM_NAMES.items()}


@pytest.fixture(scope="module")
def crate_corims(oracle_binary, tmp_path_factory) -> dict[str, list[dict]]:
    """name -> the crate's answers, one per SVN (one oracle process for all)."""
    d = tmp_path_factory.mktemp("variety")
    variety = digest_variety()
    requests = []
    for name, (data, platform) in variety.items():
        (d / name).write_bytes(data)
        requests.append((d / name, platform, SVNS))
    answers = dict(zip(variety, oracle.corim_build(requests)))
    for name, a in answers.items():
        assert all("error" not in x for x in a), (name, a[0])
    return answers


def test_byte_identical_to_the_crates_corim(crate_corims):
    compared = 0
    for name, answers in crate_corims.items():
        for a in answers:
            ours = build.build(PLATFORMS[a["platform"]], bytes.fromhex(a["digest"]), a["svn"])
            assert ours.hex() == a["corim"], (name, a["svn"])
            compared += 1
    digests = {a[0]["digest"] for a in crate_corims.values()}
    platforms = {a[0]["platform"] for a in crate_corims.values()}
    assert len(digests) == len(crate_corims) and platforms == set(PLATFORMS)
    assert {a[0]["mask"] for a in crate_corims.values()} == {1, 2}
    record_counts("CoRIM byte-equal to the igvm crate's", {
        "documents": compared, "digests": len(digests), "platforms": len(platforms),
        "svns": len(SVNS)})


def test_the_crates_ids_and_tag_ids_are_the_profiles(crate_corims):
    """corim-id "vendor/model/launch-measurement"; tag-id = UUIDv5(namespace, "vendor/model")
    computed by Python's uuid from the profile's namespace, not taken from the crate."""
    seen = set()
    for answers in crate_corims.values():
        env = P.ENVIRONMENTS[PLATFORMS[answers[0]["platform"]]]
        doc = cbor2.loads(bytes.fromhex(answers[0]["corim"]))
        comid = cbor2.loads(doc.value[1][0].value)
        assert doc.value[0] == env.corim_id and doc.value[3] == P.PROFILE_URI
        assert comid[1][0] == str(uuid.uuid5(P.TAG_ID_NAMESPACE, env.name))
        assert uuid.UUID(comid[1][0]).version == 5
        seen.add(env.name)
    assert seen == {"AMD/SEV-SNP", "Intel/TDX", "Microsoft/VBS"}


def test_our_decoder_reads_the_crates_documents(crate_corims):
    for answers in crate_corims.values():
        for a in answers:
            got = decode.decode(bytes.fromhex(a["corim"]))
            assert (P.PLATFORM_NAMES[got.platform], got.digest.hex(), got.svn) == \
                (a["platform"], a["digest"], a["svn"])


def _fields(doc: bytes) -> dict:
    """What the crate's CoRIM library decoded, in our decoder's terms."""
    got = decode.decode(doc)
    return {"id": got.corim_id, "profile": got.profile, "tag_id": got.tag_id,
            "environment": {"vendor": got.vendor, "model": got.model, "class_id": False,
                            "instance": False, "group": False},
            "measurement": {"mkey": got.mkey, "digests": [[got.hash_alg, got.digest.hex()]],
                            "svn": None},
            "svn": got.svn}


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
@pytest.mark.parametrize("svn", [0, 24, 2**64 - 1])
def test_the_crates_library_accepts_ours_and_appraises_it(oracle_binary, platform, svn):
    env = P.ENVIRONMENTS[PLATFORMS[platform]]
    digest = hashlib.sha384(f"{platform}/{svn}".encode()).digest()[:env.digest_len]
    doc = build.build(env.platform, digest, svn)
    want = _fields(doc)
    r = oracle.corim_check_bytes(doc, evidence=(platform, digest))
    assert r["ok"], r
    assert (r["id"], r["profile"], r["tags"], r["cotls"], r["coswids"]) == \
        (want["id"], want["profile"], 1, 0, 0)
    (comid,) = r["comids"]
    assert comid["tag_id"] == want["tag_id"]
    (ref,) = comid["reference"]
    assert ref == {"environment": want["environment"], "measurements": [want["measurement"]]}
    (ces,) = comid["ces"]
    assert (ces["environment"], ces["claims"]) == (want["environment"], 0)
    assert ces["series"] == [{"selection": [want["measurement"]],
                              "addition": [{"mkey": None, "digests": None,
                                            "svn": {"exact": svn}}]}]
    # the relying party's appraisal: this digest is endorsed with this SVN, another is not
    assert r["appraisal"]["corroborated"] == 1
    assert r["appraisal"]["endorsed"] == [{"mkey": None, "digests": None, "svn": {"exact": svn}}]
    other = oracle.corim_check_bytes(doc, evidence=(platform, bytes(env.digest_len)))["appraisal"]
    assert (other["corroborated"], other["endorsed"]) == (0, [])


#: Our decoder's refusals (test_build_decode.BROKEN) that the crate's CoRIM library accepts,
#: and why: the launch-measurement profile is not known to it (igvm 0.5 registers none and
#: validates no payload), it accepts documented interop forms, or it is lenient.
PROFILE = "a constraint of the profile only (igvm launch_measurement/profile.rs, Constraints)"
CRATE_ACCEPTS = {
    "no profile": PROFILE, "other profile": PROFILE, "two tags": PROFILE, "tag-id": PROFILE,
    "min svn": PROFILE + "; draft-10 svn-type-choice allows #6.553",
    "untagged svn": PROFILE + "; draft-10 svn-type-choice allows a bare uint",
    "sha-256 alg": PROFILE, "short digest": PROFILE, "vendor": PROFILE, "mkey": PROFILE,
    "no CES": PROFILE, "no reference": PROFILE, "other selection": PROFILE,
    "not tag 501": "corim 0.1.4 README: decode interop accepts bare corim-map payloads",
    "untagged CoMID": "corim 0.1.4 README: decode interop accepts bare bstr CoMIDs (TCG style)",
    "extra key": "corim 0.1.4 leniency: an empty endorsed-triples array, where draft-10 "
                 "section 5.1.4 says [ + endorsed-triple-record ]",
}
#: ... and those it refuses too: base CBOR or CDDL, not the profile.
CRATE_REFUSES = {
    "empty": "RFC 8949: no data item", "truncated": "RFC 8949: not well-formed",
    "trailing byte": "RFC 8949 section 5.1: bytes after the one data item",
    "claims": "draft-10 section 5.1.4.1: a measurement-map needs mval (key 1)",
}


def test_the_table_covers_every_refusal():
    assert set(CRATE_ACCEPTS) | set(CRATE_REFUSES) == set(BROKEN)
    assert not set(CRATE_ACCEPTS) & set(CRATE_REFUSES)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_what_the_crates_library_checks_and_what_only_the_profile_does(oracle_binary, name):
    r = oracle.corim_check_bytes(BROKEN[name][0])
    assert r["ok"] is (name in CRATE_ACCEPTS), (name, r.get("message"))


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_the_crate_reads_our_signature_envelope(oracle_binary, kind, tmp_path):
    """Its view of our COSE_Sign1: the COSE ids of RFC 9053 / IANA, our content type and
    signer, the kid we derive, a detached payload whose document it validates; and the
    Sig_structure it builds verifies our signature (its own library has no cryptography)."""
    make, alg, digest = KEYS[kind]
    key = make()
    priv, pub = _write_keys(tmp_path, key)
    doc = build.build(PLATFORMS["sev-snp"], hashlib.sha384(kind.encode()).digest(), 3)
    signature = sign.sign(doc, priv, "ACME Ltd.")
    r = oracle.corim_check_bytes(doc, signature)
    s = r["signature"]
    cose_ids = {"ES256": -7, "ES384": -35, "ES512": -36, "EdDSA": -8}   # IANA COSE Algorithms
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    assert s["ok"] and s["detached"] and s["payload"] == {"ok": True}, s
    assert (s["alg"], s["content_type"], s["issuer"]) == (cose_ids[alg], P.CORIM_CONTENT_TYPE,
                                                          "ACME Ltd.")
    assert s["kid"] == hashlib.sha256(der).hexdigest()
    # RFC 9864 section 4.2.2 deprecates these polymorphic ids (ESP384 -51 etc. replace
    # them); the crate's library still reads them and flags them.  Recorded, not refused.
    assert s["alg_deprecated"] is True
    assert bytes.fromhex(s["signature"]) == cbor2.loads(signature).value[3]
    _verify(bytes.fromhex(s["to_be_signed"]), bytes.fromhex(s["signature"]), key.public_key(),
            digest)
    # the same envelope over another document: the crate validates that document, but
    # our signature does not verify over the Sig_structure it builds for it
    other = build.build(PLATFORMS["sev-snp"], hashlib.sha384(b"other").digest(), 3)
    s2 = oracle.corim_check_bytes(other, signature)["signature"]
    assert s2["payload"] == {"ok": True}
    with pytest.raises(InvalidSignature):
        _verify(bytes.fromhex(s2["to_be_signed"]), bytes.fromhex(s2["signature"]),
                key.public_key(), digest)


def _verify(tbs: bytes, sig: bytes, public_key, digest) -> None:
    """RFC 9053 section 2.1 (ECDSA: r || s, fixed width) / section 2.2 (EdDSA), by cryptography."""
    if digest is None:
        public_key.verify(sig, tbs)
        return
    n = len(sig) // 2
    public_key.verify(encode_dss_signature(int.from_bytes(sig[:n], "big"),
                                           int.from_bytes(sig[n:], "big")),
                      tbs, ec.ECDSA(digest))


def test_the_crate_refuses_what_is_no_envelope(oracle_binary):
    """RFC 9052 section 4.2: a COSE_Sign1 is tag 18 of a 4-element array."""
    doc = build.build(PLATFORMS["sev-snp"], hashlib.sha384(b"x").digest(), 1)
    for blob in (b"\xa0", cbor2.dumps(cbor2.CBORTag(18, [1, 2])), doc):
        s = oracle.corim_check_bytes(doc, blob)["signature"]
        assert s["ok"] is False and s["message"], s
