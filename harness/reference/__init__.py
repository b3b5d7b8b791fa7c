"""The reference implementation inside: the ``igvm`` crate (microsoft/igvm, crates.io) as an oracle.

:mod:`.oracle` builds ``tools/igvm-oracle`` (a command of the project's own
depending on the crate) into the harness cache and asks it, in batch, what
the crate's parser says about IGVM files (per platform, its error, its
IGVMAPI code) and the crate's SEV-SNP launch digest.  :mod:`.codes` maps
those answers onto the classes the harness's own implementations use (the
Python validator's rule ids, the C library's IGVMAPI codes), so that the
differential tests compare three implementations.  Imports only the base
layer (``harness.cache``, ``harness.cargo``, ``harness.tree``).
"""
