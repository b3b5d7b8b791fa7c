"""The repository's parts that are not Python packages: where they are, or why they are not.

``libigvm/`` (the harness's own C implementation of the igvm C API) and
``tools/`` (the Rust crates: ``igvm-c``, the crate's C library QEMU links;
``igvm-oracle``, the reference-crate helper) live at the top of the
checkout, beside ``harness/``.  The pip install set-up makes is editable
(compat mode: a path entry to the checkout), so they are found from the
package's own location.  A non-editable install (a wheel) carries the
``harness`` package only: then :func:`part` raises a one-line error naming
the missing directory and the way out, instead of a build failing later.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.errors import HarnessError

ENV = "IGVM_HARNESS_TREE"  # a checkout to take the parts from (an installed harness)

#: part -> a file that must exist in it (what makes it usable)
PARTS = {
    "libigvm": "Makefile",
    "tools/igvm-c": "Cargo.toml",
    "tools/igvm-oracle": "Cargo.toml",
}


def checkout() -> Path:
    """The checkout the harness package was imported from (or ``$IGVM_HARNESS_TREE``)."""
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parent.parent


def part(name: str) -> Path:
    """The directory of a repository part, checked to be there."""
    marker = PARTS[name]
    d = checkout() / name
    if not (d / marker).is_file():
        raise HarnessError(
            f"{name}/ is not here ({d}): it lives in the igvm-harness checkout, which a "
            f"non-editable install does not carry; install with `pip install -e` from a "
            f"checkout, or set {ENV}=<checkout>")
    return d


def has(name: str) -> bool:
    return (checkout() / name / PARTS[name]).is_file()


__all__ = ["ENV", "PARTS", "checkout", "has", "part"]
