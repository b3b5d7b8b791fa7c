"""The Launch Measurement CoRIM profile, as data: what a document must say.

Facts, not code, from two sources:

* the profile ``tag:microsoft.com,2026:launch-measurement/v1``, defined by
  the igvm crate 0.5 (microsoft/igvm ``igvm/src/corim/launch_measurement/
  profile.rs``, module documentation; platform table and tag-id namespace in
  ``launch_measurement/mod.rs``): one CoMID tag; environment = class-map with
  vendor and model only; tag-id = lowercase UUIDv5(namespace, "vendor/model");
  one reference-values triple with one measurement (mkey + one digest); one
  conditional-endorsement-series triple whose condition is the same
  environment with an empty claims list and whose one series entry selects
  that measurement and adds an exact SVN (``#6.552``); the CoRIM id is
  "vendor/model/launch-measurement" (``launch_measurement/builder.rs``);
* the CoRIM structure, draft-ietf-rats-corim-10: the CDDL rules named next
  to each key below, the CBOR tags of its IANA section, and the named
  information hash algorithm ids of RFC 6920 (IANA "Named Information Hash
  Algorithm Registry": 1 sha-256, 7 sha-384).

Only SEV-SNP, TDX and VBS have an environment in the profile: there is no
CoRIM for an SEV or SEV-ES launch digest in it.
"""

from __future__ import annotations

import uuid

from harness.igvm.defs import PlatformType
from harness.record import Record

#: corim-map key 3 (``profile``) of every document of the profile.
PROFILE_URI = "tag:microsoft.com,2026:launch-measurement/v1"
#: The namespace of the UUIDv5 tag-ids (RFC 9562 section 5.5).
TAG_ID_NAMESPACE = uuid.UUID("85f3f1c2-22a8-441e-a1b9-bccfb63ed5f7")

# CBOR tags (draft-ietf-rats-corim-10, IANA "CBOR Tags"; RFC 9052 for COSE_Sign1)
TAG_COSE_SIGN1 = 18           # signed-corim = #6.18(COSE-Sign1-corim)
TAG_CORIM = 501               # tagged-unsigned-corim-map
TAG_COMID = 506               # tagged-concise-mid-tag (bstr .cbor concise-mid-tag)
TAG_SVN = 552                 # tagged-svn (exact SVN)
TAG_MIN_SVN = 553             # tagged-min-svn (refused by the profile)

# corim-map keys
CORIM_ID, CORIM_TAGS, CORIM_PROFILE = 0, 1, 3
# concise-mid-tag keys
COMID_TAG_IDENTITY, COMID_TRIPLES = 1, 4
TAG_IDENTITY_ID = 0           # tag-identity-map: tag-id
# triples-map keys
TRIPLES_REFERENCE, TRIPLES_CES = 0, 8   # reference-triples, conditional-endorsement-series-triples
# environment-map / class-map keys
ENV_CLASS = 0
CLASS_VENDOR, CLASS_MODEL = 1, 2
# measurement-map / measurement-values-map keys
MEAS_MKEY, MEAS_MVAL = 0, 1
MVAL_SVN, MVAL_DIGESTS = 1, 2

#: RFC 6920 named-information hash algorithm ids.
HASH_SHA256, HASH_SHA384 = 1, 7
HASH_NAMES = {HASH_SHA256: "sha-256", HASH_SHA384: "sha-384"}

#: COSE (RFC 9052 section 3.1) header labels and the CoRIM content type
#: (draft-ietf-rats-corim-10, protected-corim-header-map); CWT-Claims is RFC 9597.
COSE_ALG, COSE_CONTENT_TYPE, COSE_KID, COSE_CWT_CLAIMS, COSE_CORIM_META = 1, 3, 4, 15, 8
CWT_ISS = 1
CORIM_CONTENT_TYPE = "application/rim+cbor"


class Environment(Record, frozen=True):
    """One platform of the profile: its class-map and its launch measurement."""

    platform: PlatformType
    vendor: str
    model: str
    mkey: str
    hash_alg: int
    digest_len: int

    @property
    def tag_id(self) -> str:
        """Lowercase UUIDv5(namespace, "vendor/model") (the profile's rule)."""
        return str(uuid.uuid5(TAG_ID_NAMESPACE, f"{self.vendor}/{self.model}"))

    @property
    def corim_id(self) -> str:
        return f"{self.vendor}/{self.model}/launch-measurement"

    @property
    def name(self) -> str:
        return f"{self.vendor}/{self.model}"


#: The profile's registered vendor/model pairs.
ENVIRONMENTS: dict[PlatformType, Environment] = {
    PlatformType.TDX: Environment(PlatformType.TDX, "Intel", "TDX", "MRTD", HASH_SHA384, 48),
    PlatformType.SEV_SNP: Environment(PlatformType.SEV_SNP, "AMD", "SEV-SNP", "MEASUREMENT",
                                      HASH_SHA384, 48),
    PlatformType.VSM_ISOLATION: Environment(PlatformType.VSM_ISOLATION, "Microsoft", "VBS",
                                            "MEASUREMENT", HASH_SHA256, 32),
}

#: The harness's platform names (CLI) for the environments.
PLATFORM_NAMES = {PlatformType.SEV_SNP: "sev-snp", PlatformType.TDX: "tdx",
                  PlatformType.VSM_ISOLATION: "vsm"}


def environment(platform: PlatformType | int) -> Environment | None:
    """The profile's environment for an IGVM platform type, or None."""
    try:
        return ENVIRONMENTS.get(PlatformType(platform))
    except ValueError:
        return None


def environment_named(vendor, model) -> Environment | None:
    for env in ENVIRONMENTS.values():
        if (env.vendor, env.model) == (vendor, model):
            return env
    return None
