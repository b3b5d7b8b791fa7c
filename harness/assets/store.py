"""The installed assets: files and the manifest under ``<cache>/assets``.

Layout::

    assets/manifest.json                      what is installed (one entry per asset)
    assets/files/<package>_<version>/<path>   the files, at their path inside the package
    assets/.tmp-<pid>/                        a fetch in progress (removed at its end)
    assets/lock                               flock: one fetch at a time

A manifest entry records exactly what ran: package, version, suite, the file's
path inside the package, its SHA-256 and size, the .deb's SHA-256 (as the
signed index lists it) and whether the file is the pinned one.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator

from harness.errors import HarnessError
from harness.locks import exclusive
from harness.outputs import write_atomic

MANIFEST = "manifest.json"
FORMAT = 1
MAX_MANIFEST = 1 << 20  # a few KiB in practice


def root() -> Path:
    from harness import cache
    return cache.path(cache.ASSETS)


def files_dir(package: str, version: str, base: Path | None = None) -> Path:
    return (base or root()) / "files" / f"{package}_{version.replace(':', '%3a')}"


def load(base: Path | None = None) -> dict[str, dict[str, Any]]:
    """Manifest entries by asset name ({} when nothing was fetched)."""
    p = (base or root()) / MANIFEST
    try:
        if p.stat().st_size > MAX_MANIFEST:
            raise HarnessError(f"{p} is over {MAX_MANIFEST} bytes: not a harness manifest")
        data = json.loads(p.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise HarnessError(f"unreadable {p}: {exc}; run `igvm-harness firmware fetch`") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return {}
    assets = data.get("assets")
    return {k: v for k, v in assets.items() if isinstance(v, dict)} if isinstance(assets, dict) \
        else {}


def save(entries: dict[str, dict[str, Any]], base: Path | None = None) -> None:
    base = base or root()
    base.mkdir(parents=True, exist_ok=True)
    write_atomic(base / MANIFEST, json.dumps({"format": FORMAT, "assets": entries}, indent=2,
                                             sort_keys=True) + "\n", prefix=f".{MANIFEST}.")


def clean_stale(base: Path) -> None:
    """Remove what a killed fetch left (call under :func:`locked`: then no
    other fetch is running, so every temporary is stale)."""
    import shutil
    for p in base.glob(".tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in base.glob(f".{MANIFEST}.*"):
        p.unlink(missing_ok=True)


@contextlib.contextmanager
def locked(base: Path | None = None) -> Iterator[None]:
    """One fetch at a time (harness.locks)."""
    with exclusive((base or root()) / "lock"):
        yield
