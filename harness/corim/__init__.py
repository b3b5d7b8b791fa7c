"""Launch Measurement CoRIM: the reference values an IGVM image can carry.

A package of its own behind a thin face, as microsoft/igvm 0.5 keeps CoRIM
in ``igvm::corim`` behind its ``corim`` feature.  Format level: it uses the
IGVM format layer (``harness.igvm``) and the base modules, never the
measurement layer; what compares a CoRIM with QEMU's launch lives above it
(``harness.measure.reference``, ``harness.certify.corim``).

- ``profile``: ``tag:microsoft.com,2026:launch-measurement/v1`` as data
  (environments, tag-id namespace, CBOR keys and tags), with sources;
- ``build.build(platform, digest, svn) -> bytes``: the CoRIM, through cbor2;
- ``decode.decode(bytes) -> LaunchCorim``: untrusted bytes, bounded
  (``harness/igvm/limits.py``), every profile constraint checked;
- ``sign.sign(document, key, signer)`` / ``sign.verify(signature, document,
  public_key)`` / ``sign.read_signature``: COSE_Sign1 through pycose;
- ``embed.read(model, public_key=None)`` / ``embed.attach(data, entries,
  optional=False)`` / ``embed.without_corim(model)``: headers 0x104 / 0x105
  in an IGVM file, with the igvm crate's corim-feature rules.

Every failure is a :class:`~harness.corim.cbor.CorimError` (one line).
"""

from harness.corim.cbor import CorimError

__all__ = ["CorimError"]
