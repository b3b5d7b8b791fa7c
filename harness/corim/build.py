"""Write a Launch Measurement CoRIM for one platform's digest (``cbor2`` encodes).

The document is deterministic: the same platform, digest and SVN give the
same bytes, so a relying party can rebuild it from a digest it computed
itself and compare byte for byte.  The shape is the profile's
(:mod:`harness.corim.profile`); every map lists its integer keys in
ascending order, as the igvm crate emits them, and every length is definite
(RFC 8949 section 4.2.1, core deterministic encoding).
"""

from __future__ import annotations

from harness.corim import profile as P
from harness.corim.cbor import CBORTag, CorimError, dumps
from harness.igvm.defs import PlatformType

#: The largest SVN: ``svn = uint`` is a CBOR major type 0 integer (64 bits).
MAX_SVN = (1 << 64) - 1


def _environment(env: P.Environment) -> dict:
    return {P.ENV_CLASS: {P.CLASS_VENDOR: env.vendor, P.CLASS_MODEL: env.model}}


def _measurement(env: P.Environment, digest: bytes) -> dict:
    return {P.MEAS_MKEY: env.mkey, P.MEAS_MVAL: {P.MVAL_DIGESTS: [[env.hash_alg, digest]]}}


def comid(env: P.Environment, digest: bytes, svn: int) -> dict:
    """The one CoMID tag: reference value, and the SVN endorsed when it matches."""
    measurement = _measurement(env, digest)
    reference = [_environment(env), [measurement]]
    condition = [_environment(env), []]                 # stateful environment, no claims
    series = [[[measurement], [{P.MEAS_MVAL: {P.MVAL_SVN: CBORTag(P.TAG_SVN, svn)}}]]]
    return {
        P.COMID_TAG_IDENTITY: {P.TAG_IDENTITY_ID: env.tag_id},
        P.COMID_TRIPLES: {P.TRIPLES_REFERENCE: [reference], P.TRIPLES_CES: [[condition, series]]},
    }


def build(platform: PlatformType | int, digest: bytes, svn: int = 1) -> bytes:
    """The tagged-unsigned-corim-map (``#6.501``) for ``digest`` on ``platform``."""
    env = P.environment(platform)
    if env is None:
        names = ", ".join(e.name for e in P.ENVIRONMENTS.values())
        raise CorimError(f"the launch-measurement CoRIM profile has no environment for platform "
                         f"{_pname(platform)} (it defines {names})")
    digest = bytes(digest)
    if len(digest) != env.digest_len:
        raise CorimError(f"{env.name}: a {P.HASH_NAMES[env.hash_alg]} digest has {env.digest_len} "
                         f"bytes, not {len(digest)}")
    if not 0 <= svn <= MAX_SVN:
        raise CorimError(f"SVN {svn} is not an unsigned 64-bit integer")
    tag = CBORTag(P.TAG_COMID, dumps(comid(env, digest, svn)))
    return dumps(CBORTag(P.TAG_CORIM, {P.CORIM_ID: env.corim_id, P.CORIM_TAGS: [tag],
                                       P.CORIM_PROFILE: P.PROFILE_URI}))


def _pname(platform) -> str:
    try:
        return PlatformType(platform).name
    except ValueError:
        return str(platform)


__all__ = ["MAX_SVN", "build", "comid"]
