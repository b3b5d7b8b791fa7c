"""The machine's apt entries, read (never written) to find its Debian archive.

Both formats are read: one-line ``sources.list``/``*.list`` and deb822
``*.sources``.  The harness derives everything it fetches from the archive
entry found here (mirror URI, keyring, configured suite), so no mirror host is
ever hard-coded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from harness.errors import HarnessError

DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# Written into /etc/apt by harness versions before the private apt
# configuration; still skipped so that it never counts as the machine's own.
LEGACY_HARNESS_FILE = "igvm-harness-src.sources"
# Suite suffixes that are not a release of their own.
_POCKETS = ("-updates", "-security", "-backports", "-proposed-updates", "-backports-sloppy")


@dataclass
class AptEntry:
    types: list[str]
    uris: list[str]
    suites: list[str]
    components: list[str]
    signed_by: str | None = None
    enabled: bool = True
    origin: str = ""


@dataclass(frozen=True)
class Archive:
    """The Debian archive the machine uses: where, signed by whom, which release."""
    uri: str
    signed_by: str
    suite: str       # the configured release (``bookworm``), pockets stripped
    origin: str      # file the entry came from


def _parse_one_line(line: str, origin: str) -> AptEntry | None:
    line = line.split("#", 1)[0].strip()
    if not line:
        return None
    tokens = line.split()
    typ = tokens.pop(0)
    if typ not in ("deb", "deb-src"):
        return None
    signed_by = None
    if tokens and tokens[0].startswith("["):
        opts = []
        while tokens:
            t = tokens.pop(0)
            opts.append(t)
            if t.endswith("]"):
                break
        for opt in " ".join(opts).strip("[] ").split():
            if opt.startswith("signed-by="):
                signed_by = opt.split("=", 1)[1]
    if len(tokens) < 2:
        return None
    return AptEntry([typ], [tokens[0]], [tokens[1]], tokens[2:], signed_by, True, origin)


def parse_one_line_file(text: str, origin: str = "") -> list[AptEntry]:
    """Entries of a one-line-style ``.list`` file."""
    return [e for e in (_parse_one_line(l, origin) for l in text.splitlines()) if e]


def parse_deb822(text: str, origin: str = "") -> list[AptEntry]:
    """Entries of a deb822 ``.sources`` file (comments and continuations handled)."""
    entries = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for raw in stanza.splitlines():
            if raw.startswith("#"):
                continue
            if raw[:1] in (" ", "\t") and key:
                fields[key] += "\n" + raw.strip()
                continue
            if ":" in raw:
                key, _, value = raw.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if "types" not in fields or "uris" not in fields:
            continue
        signed = fields.get("signed-by")
        if signed and "\n" in signed:
            signed = None  # an inline key block: fall back to the archive keyring
        entries.append(AptEntry(
            fields["types"].split(), fields["uris"].split(), fields.get("suites", "").split(),
            fields.get("components", "").split(), signed,
            fields.get("enabled", "yes").lower() != "no", origin))
    return entries


def read_apt_sources(root: Path = Path("/etc/apt")) -> list[AptEntry]:
    """All entries of sources.list and sources.list.d (both formats)."""
    entries: list[AptEntry] = []
    main = root / "sources.list"
    if main.is_file():
        entries += parse_one_line_file(main.read_text(errors="replace"), str(main))
    d = root / "sources.list.d"
    for p in sorted(d.glob("*.list")) if d.is_dir() else ():
        entries += parse_one_line_file(p.read_text(errors="replace"), str(p))
    for p in sorted(d.glob("*.sources")) if d.is_dir() else ():
        if p.name == LEGACY_HARNESS_FILE:
            continue  # derive from the machine's own entries, not a harness file
        entries += parse_deb822(p.read_text(errors="replace"), str(p))
    return entries


def is_debian_archive(uri: str) -> bool:
    """The main Debian archive (``.../debian``), not debian-security/ports/etc."""
    path = uri.rstrip("/").split("://", 1)[-1]
    return path.rsplit("/", 1)[-1] == "debian"


def release_of(suite: str) -> str:
    """``bookworm-updates`` -> ``bookworm``."""
    for pocket in _POCKETS:
        if suite.endswith(pocket):
            return suite[: -len(pocket)]
    return suite


def debian_archive(entries: Iterable[AptEntry]) -> Archive:
    """The first enabled binary (``deb``) entry of the main Debian archive.

    Raises HarnessError when there is none: then nothing can be derived.
    """
    for e in entries:
        if not e.enabled or "deb" not in e.types:
            continue
        if any(s.endswith("-security") for s in e.suites):
            continue
        uris = [u for u in e.uris if is_debian_archive(u)]
        releases = [release_of(s) for s in e.suites if s]
        if not uris or not releases:
            continue
        return Archive(uris[0], e.signed_by or DEFAULT_KEYRING, releases[0],
                       e.origin or "the apt sources")
    raise HarnessError("no Debian archive (…/debian) entry in /etc/apt/sources.list or "
                       "sources.list.d: cannot derive where to fetch Debian packages from")
