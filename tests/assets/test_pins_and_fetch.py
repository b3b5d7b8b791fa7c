"""Pins, the version policy and size-bounded extraction, on real .deb files
built here with ``dpkg-deb --build``.

``LocalArchive`` stands in for the Debian archive (a unit test has no
network): it offers the .debs built here and "downloads" them by copying.
Everything else is the real code: dpkg-deb's reader, the bounds, the pin
check, the manifest.  The real archive path runs in set-up and in
tests/assets/test_cli.py.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import assets
from harness.assets import extract, fetch, pins, store
from harness.assets.pins import Pin, PinMismatch
from harness.assets.table import BY_NAME
from harness.debian.apt import Offer
from harness.debian.sources import Archive
from harness.errors import HarnessError

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="no dpkg-deb")


def build_deb(tmp: Path, package: str, version: str, files: dict[str, bytes],
              links: dict[str, str] | None = None) -> Path:
    root = tmp / f"build-{package}-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: test <test@example.org>\nDescription: test package\n")
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    for name, target in (links or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(target)
    out = tmp / f"{package}_{version.replace(':', '%3a')}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Znone", "--build", str(root), str(out)],
                   check=True, capture_output=True)
    return out


class LocalArchive:
    """Stands in for the archive through the private apt configuration."""

    def __init__(self, tmp: Path, debs: dict[tuple[str, str], tuple[Path, str]]):
        self.root = tmp / "apt"
        self.debs = debs  # (package, version) -> (deb, suite)
        self.suites = ("bookworm", "trixie", "forky", "unstable")
        self.archive = Archive("http://local.invalid/debian", "/dev/null", "bookworm", "test")
        self.downloads: list[tuple[str, str]] = []
        self.updates = 0
        self.notes: list[str] = []  # AptConfig.update's notes on dropped suites

    def ensure(self):
        return False

    def has_lists(self):
        return True

    def update(self, log=None):
        self.updates += 1

    def offers(self, package):
        from harness.debian.version import sort_newest_first
        vs = sort_newest_first({v for (p, v) in self.debs if p == package})
        return [Offer(package, v, self.debs[(package, v)][1]) for v in vs]

    def show(self, package, version):
        return {"Package": package, "Version": version}

    def download(self, package, version, dest, log=None):
        self.downloads.append((package, version))
        deb, _ = self.debs[(package, version)]
        return Path(shutil.copy(deb, dest))


AMDSEV = BY_NAME["ovmf-amdsev"]
GOOD = b"\x5a" * 4096


def _pin(data: bytes, version="2026.08+ds-2") -> Pin:
    return Pin("ovmf-amdsev", "ovmf-amdsev", version, hashlib.sha256(data).hexdigest())


def _archive(tmp_path, versions: dict[str, bytes]) -> LocalArchive:
    debs = {("ovmf-amdsev", v): (build_deb(tmp_path, "ovmf-amdsev", v, {AMDSEV.member: data}),
                                 "forky") for v, data in versions.items()}
    return LocalArchive(tmp_path, debs)


# -- pins -------------------------------------------------------------------------

def test_repository_pins_cover_the_table():
    loaded = pins.load()
    assert set(loaded) == set(assets.NAMES)
    for name, pin in loaded.items():
        assert pin.package == BY_NAME[name].package


def test_pin_check_compares_the_hash():
    pin = _pin(GOOD)
    assert pins.check(pin, pin.version, hashlib.sha256(GOOD).hexdigest()) is True
    with pytest.raises(PinMismatch, match="refused"):
        pins.check(pin, pin.version, hashlib.sha256(GOOD + b"x").hexdigest())
    assert pins.check(pin, "2026.11-1", "0" * 64) is False  # another version: unpinned


@pytest.mark.parametrize("entry", [
    'package = "p"\nversion = "1"\nsha256 = "abc"',
    'package = "p"\nversion = "1"\nsha256 = "' + "A" * 64 + '"',
    'package = "p"\nsha256 = "' + "a" * 64 + '"',
    'package = "p"\nversion = ""\nsha256 = "' + "a" * 64 + '"',
])
def test_malformed_pins_are_refused(entry):
    with pytest.raises(HarnessError):
        pins.parse(f"[x]\n{entry}\n")


# -- fetch policy ----------------------------------------------------------------------

def test_pinned_version_with_a_wrong_hash_is_refused_and_nothing_installed(tmp_path):
    archive = _archive(tmp_path, {"2026.08+ds-2": GOOD + b"tampered"})
    base = tmp_path / "assets"
    with pytest.raises(PinMismatch, match="ovmf-amdsev"):
        fetch.fetch(["ovmf-amdsev"], base=base, cfg=archive, pins={"ovmf-amdsev": _pin(GOOD)})
    assert store.load(base) == {}
    assert not list((base).glob("files/**/*.fd"))
    assert not list(base.glob(".tmp-*"))


def test_pinned_version_is_preferred_over_a_newer_one(tmp_path):
    archive = _archive(tmp_path, {"2026.08+ds-2": GOOD, "2026.11-1": b"newer" * 100})
    base = tmp_path / "assets"
    lines: list[str] = []
    got = fetch.fetch(["ovmf-amdsev"], base=base, cfg=archive, pins={"ovmf-amdsev": _pin(GOOD)},
                      progress=lines.append)
    e = got["ovmf-amdsev"]
    assert (e["version"], e["pinned"], e["suite"]) == ("2026.08+ds-2", True, "forky")
    assert e["sha256"] == hashlib.sha256(GOOD).hexdigest()
    assert (base / e["path"]).read_bytes() == GOOD
    assert not any(l.startswith("warning") for l in lines)
    # a rerun is served from the cache: no download
    archive.downloads.clear()
    fetch.fetch(["ovmf-amdsev"], base=base, cfg=archive, pins={"ovmf-amdsev": _pin(GOOD)})
    assert archive.downloads == []


def test_archive_moved_on_gives_newest_unpinned_with_a_warning(tmp_path):
    newer = b"newer firmware" * 300
    archive = _archive(tmp_path, {"2026.11-1": newer})
    base = tmp_path / "assets"
    lines: list[str] = []
    pin = _pin(GOOD)
    e = fetch.fetch(["ovmf-amdsev"], base=base, cfg=archive, pins={"ovmf-amdsev": pin},
                    progress=lines.append)["ovmf-amdsev"]
    assert (e["version"], e["pinned"]) == ("2026.11-1", False)
    assert e["pin"] == [pin.version, pin.sha256]
    assert e["sha256"] == hashlib.sha256(newer).hexdigest()
    assert archive.updates == 1  # lists were refreshed once before giving up the pin
    warn = [l for l in lines if l.startswith("warning")]
    assert len(warn) == 1 and "2026.08+ds-2" in warn[0] and "2026.11-1" in warn[0] \
        and e["sha256"] in warn[0] and "UNPINNED" in warn[0]
    # rerun: cached, still warns, no download
    archive.downloads.clear()
    lines.clear()
    fetch.fetch(["ovmf-amdsev"], base=base, cfg=archive, pins={"ovmf-amdsev": pin},
                progress=lines.append)
    assert archive.downloads == [] and any(l.startswith("warning") for l in lines)


def test_a_changed_installed_file_is_fetched_again(tmp_path):
    archive = _archive(tmp_path, {"2026.08+ds-2": GOOD})
    base = tmp_path / "assets"
    p = {"ovmf-amdsev": _pin(GOOD)}
    e = fetch.fetch(["ovmf-amdsev"], base=base, cfg=archive, pins=p)["ovmf-amdsev"]
    (base / e["path"]).write_bytes(b"\0" * len(GOOD))  # same size, other content
    archive.downloads.clear()
    fetch.fetch(["ovmf-amdsev"], base=base, cfg=archive, pins=p)
    assert archive.downloads == [("ovmf-amdsev", "2026.08+ds-2")]
    assert (base / e["path"]).read_bytes() == GOOD


def test_metapackage_resolves_to_the_dependency_holding_the_file(tmp_path):
    kernel = b"MZ kernel image" * 100
    real = build_deb(tmp_path, "linux-image-6.1.0-50-amd64", "6.1.176-1",
                     {"boot/vmlinuz-6.1.0-50-amd64": kernel, "boot/config-6.1.0-50-amd64": b"x"})
    archive = LocalArchive(tmp_path, {("linux-image-amd64", "6.1.176-1"): (real, "bookworm"),
                                      ("linux-image-6.1.0-50-amd64", "6.1.176-1"):
                                      (real, "bookworm")})
    archive.show = lambda p, v: {"Package": p, "Version": v, "Depends":
                                 "linux-image-6.1.0-50-amd64 (= 6.1.176-1)"}
    pin = Pin("linux", "linux-image-amd64", "6.1.176-1", hashlib.sha256(kernel).hexdigest())
    e = fetch.fetch(["linux"], base=tmp_path / "assets", cfg=archive,
                    pins={"linux": pin})["linux"]
    assert (e["package"], e["file"], e["pinned"]) == (
        "linux-image-6.1.0-50-amd64", "boot/vmlinuz-6.1.0-50-amd64", True)
    assert archive.downloads == [("linux-image-6.1.0-50-amd64", "6.1.176-1")]


# -- extraction bounds ----------------------------------------------------------------------

def test_extraction_refuses_a_member_over_its_bound(tmp_path):
    deb = build_deb(tmp_path, "p", "1", {"usr/share/x.fd": b"a" * 5000})
    with pytest.raises(HarnessError, match="bound"):
        extract.extract(deb, {"usr/share/x.fd": 4096}, tmp_path / "out")
    assert not (tmp_path / "out" / "usr/share/x.fd").exists()


def test_extraction_takes_only_the_wanted_file(tmp_path):
    deb = build_deb(tmp_path, "p", "1", {"usr/share/x.fd": b"x", "usr/share/y.fd": b"y"})
    got = extract.extract(deb, {"usr/share/x.fd": 16}, tmp_path / "out")
    assert got["usr/share/x.fd"].sha256 == hashlib.sha256(b"x").hexdigest()
    assert sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file()) == ["x.fd"]


def test_extraction_refuses_a_symlink_and_an_ambiguous_glob(tmp_path):
    deb = build_deb(tmp_path, "p", "1", {"boot/vmlinuz-a": b"a", "boot/vmlinuz-b": b"b"},
                    links={"usr/share/x.fd": "/etc/shadow"})
    with pytest.raises(HarnessError, match="not a regular file"):
        extract.extract(deb, {"usr/share/x.fd": 16}, tmp_path / "o1")
    with pytest.raises(HarnessError, match="more than one"):
        extract.extract(deb, {"boot/vmlinuz-*": 16}, tmp_path / "o2")
    with pytest.raises(HarnessError, match="has no"):
        extract.extract(deb, {"usr/share/absent.fd": 16}, tmp_path / "o3")


def test_not_a_deb_is_one_error(tmp_path):
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"not an ar archive")
    with pytest.raises(HarnessError, match="dpkg-deb|unreadable"):
        extract.extract(bad, {"x": 1}, tmp_path / "o")


# -- the public API on an empty cache ------------------------------------------------------------

def test_missing_asset_message_and_find(tmp_path, monkeypatch):
    monkeypatch.setenv("IGVM_HARNESS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(assets.AssetMissing) as exc:
        assets.path("ovmf-amdsev")
    assert str(exc.value) == ("firmware 'ovmf-amdsev' is not installed: "
                              "run `igvm-harness firmware fetch`")
    assert assets.find("linux") is None
    with pytest.raises(HarnessError, match="unknown asset 'ovmf-nope'"):
        assets.find("ovmf-nope")


def test_firmware_names_are_bootable_images():
    assert set(assets.firmware_names()) == {"ovmf-amdsev", "ovmf-generic", "ovmf-bookworm"}


def test_from_path(tmp_path):
    f = tmp_path / "MY.fd"
    f.write_bytes(GOOD)
    info = assets.from_path(f)
    assert info.sha256 == hashlib.sha256(GOOD).hexdigest()
    assert info.path == f.resolve() and info.status == "user-file"
    assert str(f) in info.describe()
    with pytest.raises(HarnessError, match="no such file"):
        assets.from_path(tmp_path / "absent.fd")


def test_download_failure_refreshes_the_lists_once_and_resolves_again(tmp_path):
    """Stale lists name a version the mirror no longer serves: update, then
    take what the fresh lists offer."""
    from harness.debian.apt import DownloadFailed
    newer = b"newer" * 500
    archive = _archive(tmp_path, {"2026.08+ds-2": GOOD, "2026.11-1": newer})
    stale = dict(archive.debs)
    del archive.debs[("ovmf-amdsev", "2026.11-1")]  # the stale lists know only the pin
    real_download = archive.download

    def download(package, version, dest, log=None):
        if archive.updates == 0:
            raise DownloadFailed(f"apt-get download {package}={version} failed: 404")
        return real_download(package, version, dest, log)

    def update(log=None):
        archive.updates += 1
        archive.debs = {k: v for k, v in stale.items() if k[1] != "2026.08+ds-2"}

    archive.download, archive.update = download, update
    e = fetch.fetch(["ovmf-amdsev"], base=tmp_path / "assets", cfg=archive,
                    pins={"ovmf-amdsev": _pin(GOOD)})["ovmf-amdsev"]
    assert archive.updates == 1
    assert (e["version"], e["pinned"]) == ("2026.11-1", False)


def test_leftovers_of_a_killed_fetch_are_removed(tmp_path):
    archive = _archive(tmp_path, {"2026.08+ds-2": GOOD})
    base = tmp_path / "assets"
    (base / ".tmp-99999" / "deb").mkdir(parents=True)
    (base / ".manifest.json.99999").write_text("{")
    fetch.fetch(["ovmf-amdsev"], base=base, cfg=archive, pins={"ovmf-amdsev": _pin(GOOD)})
    assert not list(base.glob(".tmp-*")) and not list(base.glob(".manifest.json.*"))
