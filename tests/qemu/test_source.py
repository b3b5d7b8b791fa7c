"""Source acquisition: deb-src derivation, version choice, checksum checks.

The downloader is a stub (``stub_downloader``) because the real one needs
the network and minutes; the real path runs in ./setup.sh and .ci/run.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.qemu import source

DEB822 = """\
# security first, to make sure it is skipped
Types: deb
URIs: http://security.example.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://ports.example.org/debian-ports
Suites: unstable
Components: main

Types: deb
URIs: http://mirror.example.net/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb
# a comment inside the stanza
URIs: http://mirror.example.org/debian/
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /etc/apt/keyrings/example.gpg
"""

ONE_LINE = """\
# comment
deb http://security.example.org/debian-security bookworm-security main
deb [arch=amd64 signed-by=/etc/apt/keyrings/mirror.gpg] https://mirror.example.com/debian bookworm main
deb-src http://other.example.com/debian bookworm main
"""


def _derived(text: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (l.partition(":") for l in text.splitlines()
                                         if l and not l.startswith("#"))}


def test_deb822_derivation_uses_the_enabled_debian_archive():
    entries = source.parse_deb822(DEB822, "test.sources")
    d = _derived(source.derive_deb_src(entries))
    assert d["Types"] == "deb-src"
    assert d["URIs"] == "http://mirror.example.org/debian/"
    assert d["Suites"] == "unstable"
    assert d["Components"] == "main"
    assert d["Signed-By"] == "/etc/apt/keyrings/example.gpg"


def test_one_line_derivation_keeps_signed_by():
    entries = source.parse_one_line_file(ONE_LINE, "test.list")
    d = _derived(source.derive_deb_src(entries))
    assert d["URIs"] == "https://mirror.example.com/debian"
    assert d["Signed-By"] == "/etc/apt/keyrings/mirror.gpg"


def test_read_apt_sources_reads_both_formats(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(ONE_LINE)
    (tmp_path / "sources.list.d" / "x.sources").write_text(DEB822)
    uris = [u for e in source.read_apt_sources(tmp_path) for u in e.uris]
    assert "https://mirror.example.com/debian" in uris
    assert "http://mirror.example.org/debian/" in uris


def test_no_debian_archive_is_one_clear_error():
    only_security = source.parse_one_line_file(
        "deb http://security.example.org/debian-security bookworm-security main\n")
    with pytest.raises(HarnessError, match="no deb-src entry possible"):
        source.derive_deb_src(only_security)


PAIRS = [
    ("1:10.2.2+ds-1", "1:11.1.3+ds-1"), ("1:10.2.2+ds-1", "1:10.2.2+ds-2"),
    ("1:10.2.0~rc1+ds-1", "1:10.2.0+ds-1"), ("1:7.2+dfsg-7+deb12u18+b3", "1:10.0.2+ds-1"),
    ("1:10.1.0+ds-5", "1:10.1.0+ds-5"), ("2:1.0-1", "1:99.0-1"), ("10.2.2-1", "1:1.0-1"),
    ("1:10.2.2+ds-1", "1:10.2.2+ds-1+b1"), ("1:9.2.0+ds-1~bpo12+1", "1:9.2.0+ds-1"),
]


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="no dpkg (oracle for Debian version order)")
@pytest.mark.parametrize("a,b", PAIRS)
def test_version_order_agrees_with_dpkg(a, b):
    for x, y in ((a, b), (b, a)):
        lt = subprocess.run(["dpkg", "--compare-versions", x, "lt", y]).returncode == 0
        eq = subprocess.run(["dpkg", "--compare-versions", x, "eq", y]).returncode == 0
        got = source.compare_versions(x, y)
        assert (got < 0) == lt and (got == 0) == eq, (x, y, got)


def test_igvm_needs_10_1():
    # backends/igvm.c appeared in QEMU 10.1 (issue 3: 10.0.x has none).
    assert not source.has_igvm("1:10.0.2+ds-1")
    assert source.has_igvm("1:10.1.0+ds-1")
    assert source.has_igvm("1:10.2.2+ds-1")
    assert not source.has_igvm("1:7.2+dfsg-7")


def _package_files(version: str, payload: bytes) -> dict[str, bytes]:
    up = version.split(":", 1)[1].rsplit("-", 1)[0]
    return {f"qemu_{up}.orig.tar.xz": payload, f"qemu_{version.split(':', 1)[1]}.debian.tar.xz":
            b"debian-" + payload}


def _dsc(files: dict[str, bytes], lie_about: str | None = None) -> str:
    lines = ["Format: 3.0 (quilt)", "Source: qemu", "Checksums-Sha256:"]
    for name, data in files.items():
        digest = hashlib.sha256(data + (b"x" if name == lie_about else b"")).hexdigest()
        lines.append(f" {digest} {len(data)} {name}")
    lines.append("Files:")
    return "\n".join(lines) + "\n"


class StubDownloader:
    """Stands in for ``apt-get source --download-only``: 404s for *missing*."""

    def __init__(self, missing=(), corrupt=()):
        self.missing, self.corrupt, self.calls = set(missing), set(corrupt), []

    def __call__(self, version: str, dest: Path) -> None:
        self.calls.append(version)
        if version in self.missing:
            raise source.DownloadError(f"404 Not Found for {version}")
        files = _package_files(version, b"payload " + version.encode())
        lie = next(iter(files)) if version in self.corrupt else None
        for name, data in files.items():
            (dest / name).write_bytes(data)
        (dest / source.dsc_name(version)).write_text(_dsc(files, lie))


def test_newest_first_with_fallback(tmp_path):
    stub = StubDownloader(missing={"1:11.1.3+ds-1", "1:11.1.2+ds-3"})
    listed = ["1:10.0.2+ds-1", "1:10.2.2+ds-1", "1:11.1.2+ds-3", "1:11.1.3+ds-1"]
    got = source.fetch_newest(listed, tmp_path, stub)
    assert got.version == "1:10.2.2+ds-1"
    assert stub.calls == ["1:11.1.3+ds-1", "1:11.1.2+ds-3", "1:10.2.2+ds-1"]
    assert [v for v, _ in got.tried] == ["1:11.1.3+ds-1", "1:11.1.2+ds-3"]
    # verified files are kept and reused without downloading again
    again = StubDownloader()
    assert source.fetch_newest(["1:10.2.2+ds-1"], tmp_path, again).version == "1:10.2.2+ds-1"
    assert again.calls == []


def test_no_version_with_igvm_is_refused(tmp_path):
    stub = StubDownloader()
    with pytest.raises(HarnessError, match=r"no qemu source version with IGVM"):
        source.fetch_newest(["1:7.2+dfsg-7", "1:10.0.2+ds-1"], tmp_path, stub)
    assert stub.calls == []


def test_all_downloads_failing_names_each_version(tmp_path):
    stub = StubDownloader(missing={"1:11.1.3+ds-1", "1:10.2.2+ds-1"})
    with pytest.raises(HarnessError) as exc:
        source.fetch_newest(["1:11.1.3+ds-1", "1:10.2.2+ds-1"], tmp_path, stub)
    assert "1:11.1.3+ds-1" in str(exc.value) and "1:10.2.2+ds-1" in str(exc.value)
    assert list(tmp_path.iterdir()) == []


def test_checksum_mismatch_is_refused_and_nothing_kept(tmp_path):
    stub = StubDownloader(corrupt={"1:10.2.2+ds-1"})
    with pytest.raises(HarnessError, match="checksum mismatch"):
        source.fetch_newest(["1:10.2.2+ds-1"], tmp_path, stub)
    assert list(tmp_path.iterdir()) == []


def test_size_mismatch_is_refused(tmp_path):
    files = {"a.orig.tar.xz": b"12345"}
    (tmp_path / "a.orig.tar.xz").write_bytes(b"1234")
    (tmp_path / "q.dsc").write_text(_dsc(files))
    with pytest.raises(HarnessError, match="size"):
        source.verify_dsc(tmp_path / "q.dsc")


# Values as printed in Debian's qemu_10.2.2+ds-1.dsc, Checksums-Sha256.
KNOWN_DSC = {"1:10.2.2+ds-1": {
    "qemu_10.2.2+ds.orig.tar.xz":
        ("be05230fe47a6937cd29f28f562932c8125f9c93c2a82c625198f7a4aa601dfb", 38669728),
    "qemu_10.2.2+ds-1.debian.tar.xz": (None, 127324),
}}


def test_real_dsc_checksums_field(qemu_source):
    """The downloaded .dsc parses; each listed file beside it has the size and
    SHA-256 (hashlib here, not verify_dsc) the field says; for a version whose
    .dsc we know, the values are Debian's."""
    if qemu_source.dsc is None:
        pytest.skip(f"the QEMU source at {qemu_source.tree} ({qemu_source.how}) has no .dsc")
    sums = source.dsc_checksums(qemu_source.dsc.read_text())
    assert any(".orig.tar." in n for n in sums) and any(".debian.tar." in n for n in sums)
    for name, (digest, size) in sums.items():
        data = (qemu_source.dsc.parent / name).read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (digest, size), name
    for name, (digest, size) in KNOWN_DSC.get(qemu_source.version, {}).items():
        assert sums[name][1] == size and digest in (None, sums[name][0]), name


def test_parse_source_forms(tmp_path):
    assert source.parse_source(None).kind == "debian"
    assert source.parse_source("debian:1:10.2.2+ds-1").version == "1:10.2.2+ds-1"
    assert source.parse_source(str(tmp_path)).kind == "tree"
    tb = tmp_path / "qemu-10.2.2.tar.xz"
    tb.write_bytes(b"")
    assert source.parse_source(str(tb)).kind == "tarball"
    with pytest.raises(HarnessError, match="unknown --source"):
        source.parse_source("fedora")
    with pytest.raises(HarnessError, match="unknown --source"):
        source.parse_source(str(tmp_path / "absent"))


def test_tree_without_igvm_is_refused(tmp_path):
    (tmp_path / "VERSION").write_text("10.0.2\n")
    with pytest.raises(HarnessError, match="no IGVM support"):
        source.resolve(source.parse_source(str(tmp_path)), tmp_path / "dl")


def test_needed_patches_exist_in_debian_packaging(qemu_packaging):
    series = (qemu_packaging / "patches" / "series").read_text().split()
    assert all(p in series for p in source.NEEDED_PATCHES)


class StubApt:
    """Stands in for the private apt configuration (harness/debian/apt.py):
    lists already there, the versions given."""

    def __init__(self, versions, have_lists=True):
        self.versions, self.have_lists, self.updates = versions, have_lists, 0
        self.notes: list[str] = []  # AptConfig.update's notes on dropped suites
        self.root = Path("/nonexistent/apt")

    def ensure(self):
        return False

    def has_lists(self):
        return self.have_lists

    def update(self, log=None):
        self.updates += 1
        self.have_lists = True

    def source_versions(self, package):
        assert package == "qemu"
        return source.sort_newest_first(self.versions) if self.have_lists else []


def test_resolve_debian_uses_the_private_apt_and_keeps_the_identity(tmp_path):
    # The build's cache key takes the identity (harness/qemu/build.py
    # cache_key); it must stay "debian-<version>" whatever apt configuration
    # listed the version, so moving off /etc/apt does not rebuild QEMU.
    apt = StubApt(["1:10.2.2+ds-1", "1:11.1.3+ds-1"])
    stub = StubDownloader(missing={"1:11.1.3+ds-1"})
    res = source.resolve_debian(source.parse_source("debian"), tmp_path, downloader=stub, cfg=apt)
    assert (res.version, res.identity) == ("1:10.2.2+ds-1", "debian-1:10.2.2+ds-1")
    assert apt.updates == 0


def test_resolve_debian_updates_missing_lists_once(tmp_path):
    apt = StubApt(["1:10.2.2+ds-1"], have_lists=False)
    res = source.resolve_debian(source.parse_source("debian"), tmp_path,
                                downloader=StubDownloader(), cfg=apt)
    assert apt.updates == 1 and res.version == "1:10.2.2+ds-1"


def test_apt_config_lives_in_the_harness_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IGVM_HARNESS_CACHE", str(tmp_path))
    cfg = source.apt_config()
    assert cfg.root == tmp_path / "apt"
    assert not str(cfg.sources_file).startswith("/etc/apt")


# --------------------------------------------------------- downloaded()
def _package(root: Path, version: str = "1:10.2.2+ds-1", upstream: str = "10.2.2") -> Path:
    """A tiny Debian source package in <root>/qemu/downloads/<version>/, laid
    out as fetch_newest leaves it (orig + debian tarballs, a .dsc listing them)."""
    import io
    import tarfile

    def tar(members: dict[str, str], top: str | None) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:xz") as tf:
            for name, text in members.items():
                data = text.encode()
                info = tarfile.TarInfo(f"{top}/{name}" if top else name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    d = root / "qemu" / "downloads" / version.replace(":", "_")
    d.mkdir(parents=True)
    plain = version.split(":", 1)[-1]
    files = {
        f"qemu_{plain.rsplit('-', 1)[0]}.orig.tar.xz":
            tar({"VERSION": upstream + "\n", "backends/igvm.c": "/* igvm */\n"},
                f"qemu-{upstream}"),
        f"qemu_{plain}.debian.tar.xz":
            tar({"debian/control": "Source: qemu\n", "debian/patches/series": "a.patch\n"}, None),
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    (d / source.dsc_name(version)).write_text(_dsc(files))
    return d


def test_downloaded_is_none_without_a_download(tmp_path):
    assert source.downloaded(tmp_path, env={}) is None
    (tmp_path / "qemu" / "downloads" / "1_10.2.2+ds-1.part").mkdir(parents=True)
    assert source.downloaded(tmp_path, env={}) is None  # an unfinished download


def test_downloaded_unpacks_the_newest_once(tmp_path):
    _package(tmp_path, "1:10.1.0+ds-1", "10.1.0")
    d = _package(tmp_path, "1:10.2.2+ds-1", "10.2.2")
    got = source.downloaded(tmp_path, env={})
    assert got.version == "1:10.2.2+ds-1" and got.dsc == d / "qemu_10.2.2+ds-1.dsc"
    assert (got.tree / "VERSION").read_text() == "10.2.2\n"
    assert got.debian == got.tree / "debian" and (got.debian / "control").is_file()
    assert tmp_path / "qemu" / "sources" in got.tree.parents
    (got.tree / "marker").write_text("x")
    again = source.downloaded(tmp_path, env={})
    assert again.tree == got.tree and (again.tree / "marker").is_file()  # not unpacked twice
    assert [p.name for p in (tmp_path / "qemu" / "sources").iterdir()] == ["1_10.2.2+ds-1"]


def test_downloaded_prefers_the_build_tree(tmp_path):
    _package(tmp_path)
    work = tmp_path / "qemu" / "work" / "qemu-10.2.2+ds-1-0123456789abcdef"
    tree = work / "src" / "qemu-10.2.2"
    (tree / "backends").mkdir(parents=True)
    (tree / "backends" / "igvm.c").write_text("")
    (tree / "debian").mkdir()
    (tree / "debian" / "control").write_text("Source: qemu\n")
    (work / ".extracted").write_text(f"{tree}\n")
    got = source.downloaded(tmp_path, env={})
    assert got.tree == tree and got.debian == tree / "debian"
    assert not (tmp_path / "qemu" / "sources").exists()


def test_downloaded_checks_the_dsc_before_unpacking(tmp_path):
    d = _package(tmp_path)
    orig = next(d.glob("*.orig.tar.xz"))
    orig.write_bytes(orig.read_bytes()[:-1] + b"\0")
    with pytest.raises(HarnessError, match="checksum mismatch"):
        source.downloaded(tmp_path, env={})
    assert not list((tmp_path / "qemu" / "sources").iterdir())


def test_downloaded_honours_the_variable(tmp_path):
    tree = tmp_path / "qemu-10.2.2"
    (tree / "backends").mkdir(parents=True)
    (tree / "backends" / "igvm.c").write_text("")
    (tree / "VERSION").write_text("10.2.2\n")
    (tmp_path / "qemu_10.2.2+ds-1.dsc").write_text("Source: qemu\n")
    env = {source.SOURCE_ENV: str(tree)}
    got = source.downloaded(tmp_path / "empty-cache", env=env)
    assert got.tree == tree and got.dsc == tmp_path / "qemu_10.2.2+ds-1.dsc" and got.debian is None
    with pytest.raises(HarnessError, match=r"IGVM_HARNESS_QEMU_SRC=.*not a QEMU source tree"):
        source.downloaded(tmp_path, env={source.SOURCE_ENV: str(tmp_path / "nope")})
