"""The reference oracle (tools/igvm-oracle, the igvm crate from crates.io) for the CoRIM
tests: built if absent; where cargo or crates.io is missing the tests that ask it skip
with that sentence (``.ci/skip-allow.toml`` admits it only where crates.io really is
unreachable)."""

import pytest

from tests.reference.conftest import oracle_binary  # noqa: F401


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """A vendor's P-384 key pair as PEM files: (private, public)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    d = tmp_path_factory.mktemp("keys")
    k = ec.generate_private_key(ec.SECP384R1())
    (d / "vendor.pem").write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    (d / "vendor.pub").write_bytes(k.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return d / "vendor.pem", d / "vendor.pub"
