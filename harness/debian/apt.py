"""A private apt configuration: the harness's own sources, lists and cache.

Everything apt reads or writes for the harness lives under one directory in
the harness cache (``<cache>/apt``)::

    etc/harness.sources      our entries (deb for every suite, deb-src for some)
    etc/sources.list.d/      empty: the machine's entries are NOT read
    etc/preferences.d/       empty: no pinning of the machine's leaks in
    etc/trusted.gpg.d/       empty: the only key is the entries' Signed-By keyring
    state/lists/             Release/InRelease + Packages/Sources indices
    state/status             empty dpkg status (what is installed does not matter)
    cache/                   apt's binary caches
    lock                     flock: one ``apt-get update`` at a time

The entries are derived from the Debian archive already configured in
/etc/apt (mirror URI, Signed-By keyring, configured release), for the
configured release and the newer ones, so that packages that only newer
suites carry (``ovmf-amdsev``) can be fetched by name on a bookworm machine
without touching /etc/apt.  apt itself verifies InRelease against the
keyring, the indices against InRelease, and each downloaded file against
its index; the harness re-checks each .deb against the SHA256 of its index
stanza and records it.

/etc/apt/apt.conf.d is still read (Dir::Etc::parts), so a proxy configured
for the machine applies here too.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from harness.debian import sources as apt_sources
from harness.debian.sources import Archive
from harness.debian.version import sort_newest_first
from harness.errors import HarnessError
from harness.inputs import sha256_file
from harness.locks import exclusive
from harness.outputs import write_atomic

# Debian releases in order; the ones after the configured release are added.
# ``forky`` is testing in 2026; add the next codename once the archive has it
# (a suite without a Release file makes ``apt-get update`` fail).
DEBIAN_RELEASES: tuple[str, ...] = ("buster", "bullseye", "bookworm", "trixie", "forky")
UNSTABLE = "unstable"
SRC_SUITES: tuple[str, ...] = (UNSTABLE,)
# Named by harness/assets/table.py (ovmf-bookworm: bookworm's OVMF by name),
# so present whatever release the machine is configured for.
HARNESS_EXTRA_SUITES: tuple[str, ...] = ("bookworm",)
SOURCES_NAME = "harness.sources"
MAX_DEB_SIZE = 512 << 20  # no package the harness fetches is near this; refuse beyond it


def suites_after(configured: str) -> tuple[str, ...]:
    """The configured release, the newer released codenames, then unstable."""
    out = [configured]
    if configured in DEBIAN_RELEASES:
        out += DEBIAN_RELEASES[DEBIAN_RELEASES.index(configured) + 1:]
    if UNSTABLE not in out and configured != "sid":
        out.append(UNSTABLE)
    return tuple(out)


def sources_text(archive: Archive, suites: tuple[str, ...],
                 src_suites: tuple[str, ...] = SRC_SUITES) -> str:
    """The deb822 text of our sources file."""
    head = ("# Written by igvm-harness (harness/debian/apt.py): the harness's private apt\n"
            f"# configuration, derived from {archive.origin}.  /etc/apt is not changed.\n")
    deb = ("Types: deb\n"
           f"URIs: {archive.uri}\n"
           f"Suites: {' '.join(suites)}\n"
           "Components: main\n"
           f"Signed-By: {archive.signed_by}\n")
    src = ""
    if src_suites:
        src = ("\nTypes: deb-src\n"
               f"URIs: {archive.uri}\n"
               f"Suites: {' '.join(src_suites)}\n"
               "Components: main\n"
               f"Signed-By: {archive.signed_by}\n")
    return head + deb + src


def _reachable_by_others(path: Path) -> bool:
    """Every ancestor of *path* is searchable by other users (so _apt can reach it)."""
    p = path.resolve()
    for d in (p, *p.parents):
        try:
            if not os.stat(d).st_mode & 0o001:
                return False
        except FileNotFoundError:
            continue
    return True




class DownloadFailed(HarnessError):
    """apt could not download a listed version (stale lists, mirror moved on)."""


@dataclass(frozen=True)
class Offer:
    """One version of a binary package as one suite of the archive serves it."""
    package: str
    version: str
    suite: str


@dataclass
class AptConfig:
    root: Path
    archive: Archive
    suites: tuple[str, ...]
    src_suites: tuple[str, ...] = SRC_SUITES
    _sandbox_user: str | None = field(default=None, repr=False)

    @classmethod
    def derive(cls, root: Path, etc: Path = Path("/etc/apt"),
               src_suites: tuple[str, ...] = SRC_SUITES,
               extra_suites: tuple[str, ...] = ()) -> "AptConfig":
        archive = apt_sources.debian_archive(apt_sources.read_apt_sources(etc))
        suites = suites_after(archive.suite)
        suites = tuple(s for s in extra_suites if s not in suites) + suites
        return cls(root, archive, suites, src_suites)

    # -- files ---------------------------------------------------------------

    @property
    def sources_file(self) -> Path:
        return self.root / "etc" / SOURCES_NAME

    @property
    def lists(self) -> Path:
        return self.root / "state" / "lists"

    def text(self) -> str:
        return sources_text(self.archive, self.suites, self.src_suites)

    def ensure(self) -> bool:
        """Create the directories and sources file; True when the sources changed
        (the lists are then stale and need ``update``)."""
        for d in ("etc/sources.list.d", "etc/preferences.d", "etc/trusted.gpg.d",
                  "state/lists/partial", "cache/archives/partial", "log"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        status = self.root / "state" / "status"
        if not status.exists():
            status.write_text("")
        text = self.text()
        if self.sources_file.is_file() and self.sources_file.read_text() == text:
            return False
        write_atomic(self.sources_file, text, prefix=f".{SOURCES_NAME}.")
        with contextlib.suppress(FileNotFoundError):
            (self.root / "state" / "updated").unlink()
        return True

    def has_lists(self) -> bool:
        """An ``update`` for the current sources file has completed."""
        stamp = self.root / "state" / "updated"
        return stamp.is_file() and stamp.read_text() == self.text()

    def options(self) -> list[str]:
        r = self.root
        opts = {
            "Dir::Etc::sourcelist": self.sources_file,
            "Dir::Etc::sourceparts": r / "etc/sources.list.d",
            "Dir::Etc::preferences": r / "etc/preferences",
            "Dir::Etc::preferencesparts": r / "etc/preferences.d",
            "Dir::Etc::trusted": r / "etc/trusted.gpg",
            "Dir::Etc::trustedparts": r / "etc/trusted.gpg.d",
            "Dir::State": r / "state",
            "Dir::State::lists": r / "state/lists",
            "Dir::State::status": r / "state/status",
            "Dir::Cache": r / "cache",
            "Dir::Log": r / "log",
            "Acquire::Languages": "none",
            "APT::Get::List-Cleanup": "1",
        }
        user = self._sandbox()
        if user:
            opts["APT::Sandbox::User"] = user
        return [x for k, v in opts.items() for x in ("-o", f"{k}={v}")]

    def _sandbox(self) -> str | None:
        """As root apt downloads as ``_apt``; under a home that _apt cannot
        enter (``/root`` is 0700) it would warn and fall back to root on every
        file, so say so once here instead."""
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam("_apt")
        except KeyError:
            return "root"
        return None if _reachable_by_others(self.root) else "root"

    # -- running apt ------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
        env.pop("APT_CONFIG", None)
        return env

    def run(self, tool: str, *args: str, cwd: Path | None = None, log: TextIO | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        cmd = [tool, *self.options(), *args]
        res = subprocess.run(cmd, cwd=cwd, env=self._env(), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             errors="replace", check=False)
        if log:
            log.write(res.stdout)
            log.flush()
        if check and res.returncode != 0:
            errs = [l for l in res.stdout.splitlines() if l.startswith(("E:", "Err:"))]
            why = errs[0] if errs else f"exit status {res.returncode}"
            raise HarnessError(f"{tool} {' '.join(args)[:80]} failed: {why[:200]}")
        return res

    def update(self, log: TextIO | None = None) -> None:
        """``apt-get update`` of our sources only (signatures checked by apt)."""
        self.ensure()
        with exclusive(self.root / "lock"):
            self.run("apt-get", "update", log=log)
            (self.root / "state" / "updated").write_text(self.text())

    def ready(self, log: TextIO | None = None) -> bool:
        """Make sure lists exist for the current sources; True when it updated."""
        changed = self.ensure()
        if changed or not self.has_lists():
            self.update(log=log)
            return True
        return False

    # -- queries ----------------------------------------------------------------

    def offers(self, package: str) -> list[Offer]:
        """Every (version, suite) of binary *package* in our lists, newest first."""
        res = self.run("apt-cache", "madison", package, check=False)
        found: list[Offer] = []
        for line in res.stdout.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) != 3 or parts[0] != package or not parts[2].endswith("Packages"):
                continue
            where = parts[2].split()
            if len(where) < 2:
                continue
            found.append(Offer(package, parts[1], where[1].split("/", 1)[0]))
        order = {v: i for i, v in enumerate(sort_newest_first({o.version for o in found}))}
        suite_rank = {s: i for i, s in enumerate(self.suites)}
        return sorted(found, key=lambda o: (order[o.version], suite_rank.get(o.suite, 99)))

    def show(self, package: str, version: str) -> dict[str, str]:
        """The index stanza of *package* = *version* (first one when several suites)."""
        res = self.run("apt-cache", "show", f"{package}={version}", check=False)
        fields: dict[str, str] = {}
        key = None
        for line in res.stdout.splitlines():
            if not line.strip():
                if fields:
                    break
                continue
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Package") != package:
            raise HarnessError(f"{package} {version} is not in the apt lists")
        return fields

    def download(self, package: str, version: str, dest: Path,
                 log: TextIO | None = None) -> Path:
        """``apt-get download package=version`` into the empty directory *dest*;
        the .deb is checked against its index stanza's Size and SHA256."""
        stanza = self.show(package, version)
        want_sha = stanza.get("SHA256", "").lower()
        if not re.fullmatch(r"[0-9a-f]{64}", want_sha):
            raise HarnessError(f"{package} {version}: index stanza has no SHA256")
        try:
            size = int(stanza.get("Size", ""))
        except ValueError:
            raise HarnessError(f"{package} {version}: index stanza has no Size") from None
        if size > MAX_DEB_SIZE:
            raise HarnessError(f"{package} {version} is {size} bytes, over the "
                               f"{MAX_DEB_SIZE >> 20} MiB bound for a fetched package")
        res = self.run("apt-get", "download", f"{package}={version}", cwd=dest, log=log,
                       check=False)
        if res.returncode != 0:
            errs = [l for l in res.stdout.splitlines() if l.startswith(("E:", "Err:"))]
            raise DownloadFailed(f"apt-get download {package}={version} failed: "
                                 f"{(errs[0] if errs else f'exit status {res.returncode}')[:200]}")
        debs = sorted(dest.glob(f"{package}_*.deb"))
        if len(debs) != 1:
            raise HarnessError(f"apt-get download {package}={version} left no single .deb "
                               f"in {dest}")
        deb = debs[0]
        if deb.stat().st_size != size or sha256_file(deb) != want_sha:
            raise HarnessError(f"checksum mismatch: {deb.name} does not match the SHA256/Size "
                               f"of its signed index entry")
        return deb

    def source_versions(self, package: str) -> list[str]:
        """Source versions our deb-src lists know, newest first."""
        res = self.run("apt-cache", "showsrc", package, check=False)
        versions = set()
        current = None
        for line in res.stdout.splitlines():
            if line.startswith("Package: "):
                current = line.split(":", 1)[1].strip()
            elif line.startswith("Version: ") and current == package:
                versions.add(line.split(":", 1)[1].strip())
        return sort_newest_first(versions)

    def source_download(self, package: str, version: str, dest: Path,
                        log: TextIO | None = None) -> subprocess.CompletedProcess:
        """``apt-get source --download-only package=version`` into *dest*."""
        return self.run("apt-get", "source", "--download-only", f"{package}={version}",
                        cwd=dest, log=log, check=False)


def harness_config(root: Path, etc: Path = Path("/etc/apt")) -> AptConfig:
    """The one configuration the whole harness shares (QEMU source, firmware):
    one sources text, so the two users never make each other re-update."""
    return AptConfig.derive(root, etc, SRC_SUITES, HARNESS_EXTRA_SUITES)
