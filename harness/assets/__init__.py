"""Real firmware, kernel and userspace from Debian packages.

``igvm-harness firmware fetch`` (run by setup.sh) installs them into
``harness.cache.path("assets")`` through the harness's private
apt configuration (harness/debian/apt.py); this module answers where they
are and exactly what they are (package, version, suite, SHA-256, pinned).
Any other file can stand in for one by option: :func:`from_path`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.assets.table import ASSETS, BY_NAME, FIRMWARE_KINDS, NAMES, AssetSpec
from harness.errors import HarnessError

MAX_USER_FILE = 1 << 30  # from_path hashes the file; refuse what no firmware is near


class AssetMissing(HarnessError):
    """The asset was not fetched: the message says how to get it."""


@dataclass(frozen=True)
class AssetInfo:
    name: str
    package: str
    version: str
    suite: str
    file: str        # path inside the package, or the path the user gave
    sha256: str
    path: Path
    pinned: bool
    kind: str = ""

    @property
    def status(self) -> str:
        if not self.package:
            return "user-file"
        return "pinned" if self.pinned else "unpinned"

    def to_json(self) -> dict[str, object]:
        """The fields a report records (JSON-safe)."""
        return {"name": self.name, "package": self.package, "version": self.version,
                "suite": self.suite, "file": self.file, "sha256": self.sha256,
                "path": str(self.path), "status": self.status}

    def describe(self) -> str:
        """One line for reports: exactly what ran."""
        if not self.package:
            return f"{self.path} (given by option, sha256 {self.sha256})"
        return (f"{self.name}: {self.package} {self.version} ({self.suite}) {self.file} "
                f"sha256 {self.sha256} [{self.status}]")


def _spec(name: str) -> AssetSpec:
    spec = BY_NAME.get(name)
    if spec is None:
        raise HarnessError(f"unknown asset {name!r} (known: {', '.join(NAMES)})")
    return spec


def _missing(name: str) -> AssetMissing:
    what = "firmware" if BY_NAME[name].kind.startswith("firmware") else "asset"
    return AssetMissing(f"{what} {name!r} is not installed: run `igvm-harness firmware fetch`")


def find(name: str) -> Path | None:
    """The installed file, or None (raises HarnessError for an unknown name)."""
    try:
        return info(name).path
    except AssetMissing:
        return None


def path(name: str) -> Path:
    """The installed file, or raise AssetMissing."""
    return info(name).path


def info(name: str) -> AssetInfo:
    """What is installed under *name*; raise AssetMissing when nothing is."""
    from harness.assets import store

    spec = _spec(name)
    entry = store.load().get(name)
    if not entry:
        raise _missing(name)
    p = store.root() / str(entry.get("path", ""))
    try:
        if not p.is_file() or p.stat().st_size != entry.get("size"):
            raise _missing(name)
    except OSError:
        raise _missing(name) from None
    return AssetInfo(name, str(entry["package"]), str(entry["version"]), str(entry["suite"]),
                     str(entry["file"]), str(entry["sha256"]), p, bool(entry.get("pinned")),
                     spec.kind)


def firmware_names() -> tuple[str, ...]:
    """The bootable OVMF builds (unified images), for parametrising suites."""
    return tuple(a.name for a in ASSETS if a.kind in FIRMWARE_KINDS)


def from_path(p: str | Path, name: str | None = None) -> AssetInfo:
    """An AssetInfo for a file the user gave (``--ovmf PATH``): hash computed."""
    from harness.inputs import sha256_file

    path = Path(p).expanduser()
    if not path.is_file():
        raise HarnessError(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAX_USER_FILE:
        raise HarnessError(f"{path}: {size} bytes, over the {MAX_USER_FILE >> 20} MiB bound")
    return AssetInfo(name or path.name, "", "", "", str(path), sha256_file(path),
                     path.resolve(), False, "user")


__all__ = ["NAMES", "AssetInfo", "AssetMissing", "find", "path", "info", "firmware_names",
           "from_path"]
