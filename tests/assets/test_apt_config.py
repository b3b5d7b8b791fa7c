"""The private apt configuration derived from sample /etc/apt trees (no network).

Expected values come from the sample trees written here and from apt itself
(``apt-config dump`` and ``apt-get update --print-uris`` read our options and
sources file exactly as a real update would, without downloading).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from harness.debian import apt, sources
from harness.errors import HarnessError

DEB822 = """\
Types: deb
URIs: http://security.example.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example.net/debian
Suites: trixie
Components: main
Enabled: no

Types: deb
URIs: http://mirror.example.org/debian/
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /etc/apt/keyrings/example.gpg
"""

ONE_LINE = """\
deb http://security.example.org/debian-security trixie-security main
deb [arch=amd64 signed-by=/etc/apt/keyrings/mirror.gpg] https://mirror.example.com/debian trixie-updates main
"""

LEGACY = """\
Types: deb-src
URIs: http://legacy.example.org/debian
Suites: unstable
Components: main
"""


def _etc(tmp_path, sources_list=None, parts=None):
    etc = tmp_path / "etc-apt"
    (etc / "sources.list.d").mkdir(parents=True)
    if sources_list is not None:
        (etc / "sources.list").write_text(sources_list)
    for name, text in (parts or {}).items():
        (etc / "sources.list.d" / name).write_text(text)
    return etc


def test_deb822_tree(tmp_path):
    etc = _etc(tmp_path, parts={"debian.sources": DEB822,
                                sources.LEGACY_HARNESS_FILE: LEGACY})
    cfg = apt.harness_config(tmp_path / "apt", etc)
    assert cfg.archive.uri == "http://mirror.example.org/debian/"
    assert cfg.archive.signed_by == "/etc/apt/keyrings/example.gpg"
    assert cfg.archive.suite == "bookworm"
    assert cfg.suites == ("bookworm", "trixie", "forky", "unstable")
    text = cfg.text()
    assert "legacy.example.org" not in text
    assert "Suites: bookworm trixie forky unstable\n" in text
    assert "Types: deb-src\n" in text and "Suites: unstable\n" in text
    assert text.count("Signed-By: /etc/apt/keyrings/example.gpg\n") == 2


def test_one_line_tree_release_from_pocket(tmp_path):
    etc = _etc(tmp_path, sources_list=ONE_LINE)
    cfg = apt.harness_config(tmp_path / "apt", etc)
    assert cfg.archive.uri == "https://mirror.example.com/debian"
    assert cfg.archive.signed_by == "/etc/apt/keyrings/mirror.gpg"
    assert cfg.archive.suite == "trixie"  # from trixie-updates
    # bookworm stays: harness/assets/table.py names it (ovmf-bookworm)
    assert cfg.suites == ("bookworm", "trixie", "forky", "unstable")


def test_no_signed_by_falls_back_to_the_archive_keyring(tmp_path):
    etc = _etc(tmp_path, sources_list="deb http://m.example.org/debian bookworm main\n")
    cfg = apt.harness_config(tmp_path / "apt", etc)
    assert cfg.archive.signed_by == "/usr/share/keyrings/debian-archive-keyring.gpg"


def test_table_suites_are_in_the_shared_configuration(tmp_path):
    from harness.assets.table import ASSETS
    etc = _etc(tmp_path, sources_list="deb http://m.example.org/debian forky main\n")
    cfg = apt.harness_config(tmp_path / "apt", etc)
    for a in ASSETS:
        for s in a.suites:
            assert s.startswith("@") or s in cfg.suites, (a.name, s)


def test_no_debian_archive_is_one_error(tmp_path):
    etc = _etc(tmp_path, sources_list="deb http://security.example.org/debian-security "
                                      "bookworm-security main\n")
    with pytest.raises(HarnessError, match="no Debian archive"):
        apt.harness_config(tmp_path / "apt", etc)


def test_ensure_writes_only_under_its_root_and_is_idempotent(tmp_path):
    etc = _etc(tmp_path, parts={"debian.sources": DEB822})
    before = sorted(p.relative_to(etc) for p in etc.rglob("*"))
    cfg = apt.harness_config(tmp_path / "apt", etc)
    assert cfg.ensure() is True
    assert cfg.ensure() is False
    assert not cfg.has_lists()
    assert sorted(p.relative_to(etc) for p in etc.rglob("*")) == before
    assert cfg.sources_file.read_text() == cfg.text()


@pytest.mark.skipif(shutil.which("apt-config") is None, reason="no apt-config (not Debian)")
def test_apt_reads_our_directories(tmp_path):
    etc = _etc(tmp_path, parts={"debian.sources": DEB822})
    cfg = apt.harness_config(tmp_path / "apt", etc)
    cfg.ensure()
    out = subprocess.run(["apt-config", *cfg.options(), "dump"], capture_output=True, text=True,
                         check=True, env=cfg._env()).stdout
    dump = dict(line.rstrip(";").split(" ", 1) for line in out.splitlines() if " " in line)
    root = str(tmp_path / "apt")
    for key in ("Dir::Etc::sourcelist", "Dir::Etc::sourceparts", "Dir::State::lists",
                "Dir::State::status", "Dir::Cache", "Dir::Etc::trustedparts",
                "Dir::Etc::preferencesparts"):
        assert dump[key].strip('"').startswith(root), key


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="no apt-get (not Debian)")
def test_apt_would_fetch_every_suite_from_the_derived_mirror(tmp_path):
    etc = _etc(tmp_path, parts={"debian.sources": DEB822})
    cfg = apt.harness_config(tmp_path / "apt", etc)
    cfg.ensure()
    out = cfg.run("apt-get", "update", "--print-uris").stdout
    uris = {line.split()[0].strip("'") for line in out.splitlines() if line.startswith("'")}
    assert {"bookworm", "trixie", "unstable"} <= set(cfg.suites)
    for suite in cfg.suites:
        assert f"http://mirror.example.org/debian/dists/{suite}/InRelease" in uris
    assert not any("security.example.org" in u or "mirror.example.net" in u for u in uris)
    assert not list((tmp_path / "apt" / "state" / "lists").glob("*Release"))


def test_suites_after():
    known = ("bullseye", "bookworm", "trixie", "forky")
    assert apt.suites_after("bookworm", known) == ("bookworm", "trixie", "forky", "unstable")
    assert apt.suites_after("forky", known) == ("forky", "unstable")
    assert apt.suites_after("sid", known) == ("sid",)
    assert apt.suites_after("bookworm-backports", known) == ("bookworm-backports", "unstable")
