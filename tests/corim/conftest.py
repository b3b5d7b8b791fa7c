"""The reference oracle (tools/igvm-oracle, the igvm crate from crates.io) for the CoRIM
tests: built if absent; where cargo or crates.io is missing the tests that ask it skip
with that sentence (``.ci/skip-allow.toml`` admits it only where crates.io really is
unreachable)."""

from tests.reference.conftest import oracle_binary  # noqa: F401
