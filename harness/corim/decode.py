"""Read a Launch Measurement CoRIM and check it against the profile.

:func:`decode` takes untrusted bytes (a 0x104 header's file data, a file a
vendor published) and returns a :class:`LaunchCorim` -- platform, digest,
hash algorithm, SVN, tag-id -- or raises one :class:`CorimError` line
naming the first rule broken.  The rules are the profile's "Constraints"
(igvm crate 0.5 ``corim/launch_measurement/profile.rs``): the profile URI
present, exactly one CoMID, a registered vendor/model with its tag-id
(compared case-insensitively), both triples, the digest algorithm and
length of the platform, an exact SVN (``#6.552``; ``#6.553`` and untagged
integers refused).  Structure follows draft-ietf-rats-corim-10's CDDL.
"""

from __future__ import annotations

from harness.corim import profile as P
from harness.corim.cbor import CBORTag, CorimError, loads
from harness.corim.build import MAX_SVN
from harness.igvm.defs import PlatformType
from harness.record import Record


class LaunchCorim(Record, frozen=True):
    """What a profile-conforming CoRIM says."""

    platform: PlatformType
    vendor: str
    model: str
    mkey: str
    hash_alg: int
    digest: bytes
    svn: int
    tag_id: str
    corim_id: str
    profile: str = P.PROFILE_URI

    @property
    def environment(self) -> P.Environment:
        return P.ENVIRONMENTS[self.platform]

    @property
    def hash_name(self) -> str:
        return P.HASH_NAMES.get(self.hash_alg, str(self.hash_alg))

    def as_dict(self) -> dict:
        return {"profile": self.profile, "platform": P.PLATFORM_NAMES[self.platform],
                "environment": f"{self.vendor}/{self.model}", "mkey": self.mkey,
                "algorithm": self.hash_name, "digest": self.digest.hex(), "svn": self.svn,
                "tag_id": self.tag_id, "corim_id": self.corim_id}

    def summary(self) -> str:
        return (f"{self.vendor}/{self.model} {self.mkey} {self.hash_name} {self.digest.hex()} "
                f"SVN {self.svn}")


def _fail(where: str, what: str) -> CorimError:
    return CorimError(f"CoRIM: {where}: {what}")


def _describe(v) -> str:
    """A short, bounded description of an unexpected value (no huge ints or strings)."""
    if isinstance(v, CBORTag):
        return f"tag {v.tag}" if v.tag < 1 << 64 else "a tag"
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, int):
        return str(v) if abs(v) < 1 << 64 else "a big integer"
    if isinstance(v, (str, bytes)):
        text = repr(v[:40]) + ("..." if len(v) > 40 else "")
        return f"{type(v).__name__} {text}"
    return type(v).__name__


def _map(v, where: str, required: tuple = (), allowed: tuple | None = None) -> dict:
    if not isinstance(v, dict):
        raise _fail(where, f"expected a map, found {_describe(v)}")
    for k in required:
        if k not in v:
            raise _fail(where, f"key {k} is missing")
    if allowed is not None:
        extra = [k for k in v if k not in allowed]
        if extra:
            raise _fail(where, f"key {_describe(extra[0])} is not used by the profile")
    return v


def _array(v, where: str, length: int | None = None) -> list:
    if not isinstance(v, (list, tuple)):
        raise _fail(where, f"expected an array, found {_describe(v)}")
    if length is not None and len(v) != length:
        raise _fail(where, f"expected {length} element(s), found {len(v)}")
    return list(v)


def _text(v, where: str) -> str:
    if not isinstance(v, str):
        raise _fail(where, f"expected a text string, found {_describe(v)}")
    return v


def _tag(v, tag: int, where: str):
    if not isinstance(v, CBORTag) or v.tag != tag:
        raise _fail(where, f"expected tag {tag}, found {_describe(v)}")
    return v.value


def _environment(v, where: str) -> P.Environment:
    envmap = _map(v, where, (P.ENV_CLASS,), (P.ENV_CLASS,))
    cls = _map(envmap[P.ENV_CLASS], f"{where} class", (P.CLASS_VENDOR, P.CLASS_MODEL),
               (P.CLASS_VENDOR, P.CLASS_MODEL))
    vendor = _text(cls[P.CLASS_VENDOR], f"{where} vendor")
    model = _text(cls[P.CLASS_MODEL], f"{where} model")
    env = P.environment_named(vendor, model)
    if env is None:
        raise _fail(where, f"{_describe(vendor)}/{_describe(model)} is not a vendor/model of the "
                           "profile (" + ", ".join(e.name for e in P.ENVIRONMENTS.values()) + ")")
    return env


def _measurement(v, env: P.Environment, where: str) -> bytes:
    meas = _map(v, where, (P.MEAS_MKEY, P.MEAS_MVAL), (P.MEAS_MKEY, P.MEAS_MVAL))
    mkey = _text(meas[P.MEAS_MKEY], f"{where} mkey")
    if mkey != env.mkey:
        raise _fail(where, f"mkey {_describe(mkey)}, the profile's {env.name} mkey is {env.mkey!r}")
    mval = _map(meas[P.MEAS_MVAL], f"{where} mval", (P.MVAL_DIGESTS,), (P.MVAL_DIGESTS,))
    digests = _array(mval[P.MVAL_DIGESTS], f"{where} digests", 1)
    alg, value = _array(digests[0], f"{where} digest", 2)
    if alg != env.hash_alg or isinstance(alg, bool):
        raise _fail(where, f"digest algorithm {_describe(alg)}, {env.name} uses "
                           f"{env.hash_alg} ({P.HASH_NAMES[env.hash_alg]})")
    if not isinstance(value, bytes) or len(value) != env.digest_len:
        raise _fail(where, f"digest {_describe(value)}: {env.name} needs {env.digest_len} bytes")
    return value


def _comid(raw, where: str) -> tuple[P.Environment, bytes, int, str]:
    tag = _map(loads(raw, "CoRIM CoMID"), where, (P.COMID_TAG_IDENTITY, P.COMID_TRIPLES))
    ident = _map(tag[P.COMID_TAG_IDENTITY], f"{where} tag-identity", (P.TAG_IDENTITY_ID,))
    tag_id = _text(ident[P.TAG_IDENTITY_ID], f"{where} tag-id")
    triples = _map(tag[P.COMID_TRIPLES], f"{where} triples", (P.TRIPLES_REFERENCE, P.TRIPLES_CES),
                   (P.TRIPLES_REFERENCE, P.TRIPLES_CES))
    refs = _array(triples[P.TRIPLES_REFERENCE], f"{where} reference-triples", 1)
    env_v, measurements = _array(refs[0], f"{where} reference triple", 2)
    env = _environment(env_v, f"{where} reference triple environment")
    measurements = _array(measurements, f"{where} reference triple measurements", 1)
    digest = _measurement(measurements[0], env, f"{where} reference value")
    if tag_id.lower() != env.tag_id:
        raise _fail(where, f"tag-id {_describe(tag_id)}, the profile's for {env.name} is "
                           f"{env.tag_id} (UUIDv5 of {env.name!r})")
    ces = _array(triples[P.TRIPLES_CES], f"{where} conditional-endorsement-series triples", 1)
    condition, series = _array(ces[0], f"{where} CES triple", 2)
    cond_env, claims = _array(condition, f"{where} CES condition", 2)
    if _environment(cond_env, f"{where} CES condition environment") != env:
        raise _fail(where, "the CES condition names another environment than the reference value")
    if _array(claims, f"{where} CES condition claims") != []:
        raise _fail(where, "the CES condition's claims list is not empty")
    series = _array(series, f"{where} CES series", 1)
    selection, addition = _array(series[0], f"{where} CES series entry", 2)
    selection = _array(selection, f"{where} CES selection", 1)
    if _measurement(selection[0], env, f"{where} CES selection") != digest:
        raise _fail(where, "the CES selection's digest is not the reference value's")
    addition = _array(addition, f"{where} CES addition", 1)
    add = _map(addition[0], f"{where} CES addition", (P.MEAS_MVAL,), (P.MEAS_MVAL,))
    mval = _map(add[P.MEAS_MVAL], f"{where} CES addition mval", (P.MVAL_SVN,), (P.MVAL_SVN,))
    svn_v = mval[P.MVAL_SVN]
    if isinstance(svn_v, CBORTag) and svn_v.tag == P.TAG_MIN_SVN:
        raise _fail(where, "the SVN is a minimum SVN (#6.553); the profile allows only an exact SVN "
                           "(#6.552)")
    svn = _tag(svn_v, P.TAG_SVN, f"{where} SVN")
    if not isinstance(svn, int) or isinstance(svn, bool) or not 0 <= svn <= MAX_SVN:
        raise _fail(where, f"SVN {_describe(svn)} is not an unsigned 64-bit integer")
    return env, digest, svn, tag_id


def decode(data) -> LaunchCorim:
    """The launch measurement a profile-conforming CoRIM carries."""
    corim = _map(_tag(loads(data, "CoRIM"), P.TAG_CORIM, "top level"), "corim-map",
                 (P.CORIM_ID, P.CORIM_TAGS))
    if P.CORIM_PROFILE not in corim:
        raise _fail("corim-map", "no profile (key 3): the profile requires "
                                 f"{P.PROFILE_URI!r}")
    profile = corim[P.CORIM_PROFILE]
    if profile != P.PROFILE_URI:
        raise _fail("corim-map", f"profile {_describe(profile)}, not {P.PROFILE_URI!r}")
    corim_id = _text(corim[P.CORIM_ID], "corim-map id")
    tags = _array(corim[P.CORIM_TAGS], "corim-map tags")
    if len(tags) != 1:
        raise _fail("corim-map tags", f"{len(tags)} tags; the profile carries exactly one CoMID")
    raw = _tag(tags[0], P.TAG_COMID, "corim-map tags")
    if not isinstance(raw, bytes):
        raise _fail("CoMID", f"expected the CoMID's bytes, found {_describe(raw)}")
    env, digest, svn, tag_id = _comid(raw, "CoMID")
    return LaunchCorim(env.platform, env.vendor, env.model, env.mkey, env.hash_alg, digest, svn,
                       tag_id, corim_id)


__all__ = ["LaunchCorim", "decode"]
