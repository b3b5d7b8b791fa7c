"""``igvm-harness firmware fetch``: resolve, download, verify, extract, record.

Version policy (what CI sees the day Debian uploads a new OVMF):

1. the pinned version (pins.toml) when any allowed suite still serves it;
   its file must have the pinned SHA-256, otherwise it is refused;
2. otherwise the newest version the allowed suites serve, verified by apt's
   signature and hash chain like any other, installed and recorded as
   ``unpinned``, with a warning line on every fetch and list, so that a run
   keeps working and its report still names exactly what ran (package,
   version, sha256).

An installed asset whose file still has its recorded hash is reused without
any network access: a rerun of set-up is fast.  ``--refresh`` re-resolves.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

from harness.assets import pins as pins_mod
from harness.assets import store
from harness.assets.extract import extract
from harness.assets.pins import Pin
from harness.assets.table import BY_NAME, CONFIGURED, NAMES, NEWEST, AssetSpec
from harness.debian.apt import AptConfig, DownloadFailed, Offer, harness_config
from harness.inputs import sha256_file
from harness.errors import HarnessError

Progress = Callable[[str], None]


class UnknownAsset(HarnessError):
    pass


def specs_for(names: Iterable[str] | None) -> list[AssetSpec]:
    names = list(names or NAMES)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise UnknownAsset(f"unknown asset {', '.join(repr(n) for n in unknown)} "
                           f"(known: {', '.join(NAMES)})")
    return [BY_NAME[n] for n in dict.fromkeys(names)]


def apt_config() -> AptConfig:
    """The harness's private apt configuration (shared with the QEMU source)."""
    return harness_config(store.root().parent / "apt")


def allowed_suites(spec: AssetSpec, cfg: AptConfig) -> tuple[str, ...]:
    if spec.suites == NEWEST:
        return cfg.suites
    if spec.suites == CONFIGURED:
        return (cfg.archive.suite,)
    return spec.suites


@dataclass
class Choice:
    spec: AssetSpec
    offer: Offer            # the package asked for, as a suite serves it
    package: str            # the package holding the file (differs for a metapackage)
    version: str
    pin: Pin | None

    @property
    def pinned(self) -> bool:
        return self.pin is not None and self.offer.version == self.pin.version


def choose(spec: AssetSpec, cfg: AptConfig, pin: Pin | None) -> Choice | None:
    suites = allowed_suites(spec, cfg)
    offers = [o for o in cfg.offers(spec.package) if o.suite in suites]
    if not offers:
        return None
    if pin:
        offers = [o for o in offers if o.version == pin.version] or offers
    offer = offers[0]
    package, version = spec.package, offer.version
    if spec.via_depends:
        depends = cfg.show(spec.package, offer.version).get("Depends", "")
        m = re.search(rf"({spec.via_depends})(?:\s*\(=\s*([^)\s]+)\))?", depends)
        if not m:
            raise HarnessError(f"{spec.package} {offer.version} depends on no package "
                               f"matching {spec.via_depends}")
        package, version = m.group(1), m.group(2) or offer.version
    return Choice(spec, offer, package, version, pin)


def is_intact(entry: dict[str, Any], base: Path) -> bool:
    """The recorded file exists with its recorded size and SHA-256."""
    path = base / str(entry.get("path", ""))
    try:
        if not path.is_file() or path.stat().st_size != entry.get("size"):
            return False
    except OSError:
        return False
    return sha256_file(path) == entry.get("sha256")


def is_current(entry: dict[str, Any] | None, spec: AssetSpec, pin: Pin | None,
               base: Path) -> bool:
    """The installed file is intact and is what the table and pins ask for."""
    if not entry or entry.get("requested") != spec.package:
        return False
    if not fnmatch.fnmatchcase(str(entry.get("file", "")), spec.member):
        return False
    if not is_intact(entry, base):
        return False
    if pin is None:
        return True
    if entry.get("pinned"):
        return entry.get("version") == pin.version and entry.get("sha256") == pin.sha256
    # unpinned: current while the pin it fell back from is unchanged
    return entry.get("pin") == [pin.version, pin.sha256]


def unpinned_warning(entry: dict[str, Any]) -> str:
    pin = entry.get("pin")
    why = (f"pinned version {pin[0]} is not served by the archive" if pin
           else "no pin in harness/assets/pins.toml")
    return (f"warning: {entry['name']}: {why}; using {entry['package']} {entry['version']} "
            f"from {entry['suite']}, verified by apt, UNPINNED (sha256 {entry['sha256']})")


def fetch(names: Iterable[str] | None = None, refresh: bool = False,
          progress: Progress = lambda s: None, log: TextIO | None = None,
          base: Path | None = None, cfg: AptConfig | None = None,
          pins: dict[str, Pin] | None = None) -> dict[str, dict[str, Any]]:
    """Install the named assets (all by default); return their manifest entries."""
    specs = specs_for(names)
    base = base or store.root()
    pins = pins_mod.load() if pins is None else pins
    with store.locked(base):
        store.clean_stale(base)
        entries = store.load(base)
        todo = []
        for spec in specs:
            pin = pins.get(spec.name)
            entry = entries.get(spec.name)
            if not refresh and is_current(entry, spec, pin, base):
                assert entry
                status = "pinned" if entry.get("pinned") else "unpinned"
                progress(f"{spec.name}: cached {entry['package']} {entry['version']} ({status})")
                if not entry.get("pinned"):
                    progress(unpinned_warning(entry))
            else:
                todo.append(spec)
        if todo:
            cfg = cfg or apt_config()
            _install(todo, entries, pins, cfg, base, progress, log)
        return {s.name: entries[s.name] for s in specs}


def _choices(todo: list[AssetSpec], cfg: AptConfig, pins: dict[str, Pin]) -> list[Choice | None]:
    return [choose(s, cfg, pins.get(s.name)) for s in todo]


def _update(cfg: AptConfig, progress: Progress, log: TextIO | None) -> None:
    cfg.update(log=log)
    for note in cfg.notes:
        progress(note)


def _install(todo: list[AssetSpec], entries: dict[str, dict[str, Any]], pins: dict[str, Pin],
             cfg: AptConfig, base: Path, progress: Progress, log: TextIO | None) -> None:
    """Install *todo*; the lists are refreshed at most once per run: when missing,
    when they lack a pinned version, or when a download fails (a mirror that has
    moved on from what stale lists name)."""
    updated = False
    if cfg.ensure() or not cfg.has_lists():
        progress(f"apt-get update (private configuration in {cfg.root}; suites "
                 f"{' '.join(cfg.suites)})")
        _update(cfg, progress, log)
        updated = True
    while True:
        try:
            _install_once(todo, entries, pins, cfg, base, progress, log, updated)
            return
        except DownloadFailed:
            if updated:
                raise
            progress("apt-get update (a download failed; the lists may be stale)")
            _update(cfg, progress, log)
            updated = True
            todo = [s for s in todo if not is_current(entries.get(s.name), s, pins.get(s.name),
                                                      base)]


def _install_once(todo: list[AssetSpec], entries: dict[str, dict[str, Any]],
                  pins: dict[str, Pin], cfg: AptConfig, base: Path, progress: Progress,
                  log: TextIO | None, updated: bool) -> None:
    choices = _choices(todo, cfg, pins)
    if not updated and any(c is None or (c.pin and not c.pinned) for c in choices):
        progress("apt-get update (the lists lack a pinned version; they may be stale)")
        _update(cfg, progress, log)
        choices = _choices(todo, cfg, pins)
    for spec, c in zip(todo, choices):
        if c is None:
            raise HarnessError(f"{spec.name}: no suite of {', '.join(allowed_suites(spec, cfg))} "
                               f"serves package {spec.package}")
    groups: dict[tuple[str, str], list[Choice]] = defaultdict(list)
    for c in choices:
        assert c
        groups[(c.package, c.version)].append(c)
    tmp = base / f".tmp-{os.getpid()}"
    try:
        for (package, version), group in groups.items():
            shutil.rmtree(tmp, ignore_errors=True)
            (tmp / "deb").mkdir(parents=True)
            suite = group[0].offer.suite
            progress(f"{', '.join(c.spec.name for c in group)}: downloading {package} {version} "
                     f"from {suite}")
            deb = cfg.download(package, version, tmp / "deb", log=log)
            deb_sha = sha256_file(deb)
            got = extract(deb, {c.spec.member: c.spec.max_size for c in group}, tmp / "x")
            for c in group:
                _record(c, got[c.spec.member], package, version, suite, deb.name, deb_sha,
                        entries, base, progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _record(c: Choice, ex, package: str, version: str, suite: str, deb_name: str,
            deb_sha: str, entries: dict[str, dict[str, Any]], base: Path,
            progress: Progress) -> None:
    """Check the pin, move the file into place, write the manifest entry."""
    pinned = bool(c.pin) and pins_mod.check(c.pin, c.offer.version, ex.sha256)
    final = store.files_dir(package, version, base) / ex.member
    final.parent.mkdir(parents=True, exist_ok=True)
    ex.path.replace(final)
    entries[c.spec.name] = {
        "name": c.spec.name, "requested": c.spec.package, "package": package,
        "version": version, "suite": suite, "file": ex.member,
        "path": str(final.relative_to(base)), "sha256": ex.sha256, "size": ex.size,
        "deb": deb_name, "deb_sha256": deb_sha, "pinned": pinned,
        "pin": [c.pin.version, c.pin.sha256] if c.pin else None,
        "kind": c.spec.kind,
        "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    store.save(entries, base)
    progress(f"{c.spec.name}: installed {final} sha256 {ex.sha256} "
             f"({'pinned' if pinned else 'unpinned'})")
    if not pinned:
        progress(unpinned_warning(entries[c.spec.name]))
