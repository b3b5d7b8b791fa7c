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
import datetime as _dt
import os
import pwd
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from harness.debian import releases as debian_releases
from harness.debian import sources as apt_sources
from harness.debian.sources import Archive
from harness.debian.version import sort_newest_first
from harness.errors import HarnessError
from harness.inputs import sha256_file
from harness.locks import exclusive
from harness.outputs import write_atomic

# Debian's releases in order come from Debian's table (harness/debian/releases.py);
# the ones after the configured release are added.
UNSTABLE = "unstable"
SRC_SUITES: tuple[str, ...] = (UNSTABLE,)
# Named by harness/assets/table.py (ovmf-bookworm: bookworm's OVMF by name),
# so present whatever release the machine is configured for.
HARNESS_EXTRA_SUITES: tuple[str, ...] = ("bookworm",)
SOURCES_NAME = "harness.sources"
MAX_DEB_SIZE = 512 << 20  # no package the harness fetches is near this; refuse beyond it
#: A newer suite the archive turned out not to have is left out this long
#: before ``apt-get update`` asks for it again.
ABSENT_RECHECK = _dt.timedelta(days=7)
#: apt-get update's line for a suite without a Release file (apt 2.x,
#: apt-pkg/acquire-item.cc: "The repository '%s' does not have a Release file.",
#: %s being "URI SUITE Release").
_NO_RELEASE = re.compile(r"The repository '(\S+) (\S+) Release' does not have a Release file")


def newer_releases(configured: str, known: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The released codenames after *configured* (none when it is not a numbered release)."""
    known = debian_releases.releases() if known is None else known
    return known[known.index(configured) + 1:] if configured in known else ()


def suites_after(configured: str, known: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The configured release, the newer released codenames, then unstable."""
    out = [configured, *newer_releases(configured, known)]
    if UNSTABLE not in out and configured != "sid":
        out.append(UNSTABLE)
    return tuple(out)


def suites_without_release(apt_output: str) -> set[str]:
    """Suites apt-get update reported as having no Release file."""
    return {m.group(2) for m in _NO_RELEASE.finditer(apt_output)}


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
    #: Suites that may not exist yet (newer releases from Debian's table):
    #: dropped, with a note, when the archive has no Release file for them.
    optional_suites: tuple[str, ...] = ()
    #: One line per suite dropped by the last :meth:`update`, for the caller to show.
    notes: list[str] = field(default_factory=list, repr=False)
    _sandbox_user: str | None = field(default=None, repr=False)

    @classmethod
    def derive(cls, root: Path, etc: Path = Path("/etc/apt"),
               src_suites: tuple[str, ...] = SRC_SUITES,
               extra_suites: tuple[str, ...] = (),
               today: _dt.date | None = None) -> "AptConfig":
        archive = apt_sources.debian_archive(apt_sources.read_apt_sources(etc))
        known = debian_releases.releases()  # read Debian's table once
        absent = read_absent(root, today or _dt.date.today())
        suites = tuple(s for s in suites_after(archive.suite, known) if s not in absent)
        suites = tuple(s for s in extra_suites if s not in suites) + suites
        optional = tuple(s for s in newer_releases(archive.suite, known)
                         if s in suites and s not in extra_suites)
        return cls(root, archive, suites, src_suites, optional)

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
            raise HarnessError(_failure(tool, args, res))
        return res

    def update(self, log: TextIO | None = None) -> None:
        """``apt-get update`` of our sources only (signatures checked by apt).

        A newer release the archive does not carry yet (Debian's table can
        name it before the mirror does) is dropped with a note in
        :attr:`notes` and left out for :data:`ABSENT_RECHECK`; any other
        failure is an error.
        """
        self.ensure()
        self.notes = []
        with exclusive(self.root / "lock"):
            res = self.run("apt-get", "update", log=log, check=False)
            missing = suites_without_release(res.stdout) if res.returncode else set()
            if missing and missing <= set(self.optional_suites):
                self.suites = tuple(s for s in self.suites if s not in missing)
                record_absent(self.root, missing, _dt.date.today())
                self.notes = [f"note: the archive has no suite {s!r} yet (Debian's release "
                              f"table names it); left out until "
                              f"{_dt.date.today() + ABSENT_RECHECK}" for s in sorted(missing)]
                if log:
                    log.write("".join(n + "\n" for n in self.notes))
                self.ensure()
                res = self.run("apt-get", "update", log=log, check=False)
            if res.returncode != 0:
                raise HarnessError(_failure("apt-get", ("update",), res))
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
            raise DownloadFailed(_failure("apt-get", ("download", f"{package}={version}"), res))
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


def _failure(tool: str, args, res: subprocess.CompletedProcess) -> str:
    """One line for a failed apt command: its first E:/Err: line."""
    errs = [l for l in res.stdout.splitlines() if l.startswith(("E:", "Err:"))]
    why = errs[0] if errs else f"exit status {res.returncode}"
    return f"{tool} {' '.join(args)[:80]} failed: {why[:200]}"


def _absent_file(root: Path) -> Path:
    return root / "state" / "absent-suites"


def _absent_lines(root: Path) -> list[str]:
    try:
        text = _absent_file(root).read_text(errors="replace")[:4096]
    except OSError:
        return []
    return [l for l in text.splitlines() if l.strip()]


def read_absent(root: Path, today: _dt.date) -> set[str]:
    """Suites recorded as missing from the archive less than ABSENT_RECHECK ago."""
    out = set()
    for line in _absent_lines(root):
        parts = line.split()
        if len(parts) != 2:
            continue
        try:
            when = _dt.date.fromisoformat(parts[1])
        except ValueError:
            continue
        if today - when < ABSENT_RECHECK:
            out.add(parts[0])
    return out


def record_absent(root: Path, suites: set[str], today: _dt.date) -> None:
    path = _absent_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    still = read_absent(root, today)
    kept = {line.split()[0]: line for line in _absent_lines(root) if line.split()[0] in still}
    kept.update({s: f"{s} {today.isoformat()}" for s in suites})
    write_atomic(path, "".join(kept[s] + "\n" for s in sorted(kept)), prefix=".absent-suites.")


def harness_config(root: Path, etc: Path = Path("/etc/apt")) -> AptConfig:
    """The one configuration the whole harness shares (QEMU source, firmware):
    one sources text, so the two users never make each other re-update."""
    return AptConfig.derive(root, etc, SRC_SUITES, HARNESS_EXTRA_SUITES)
