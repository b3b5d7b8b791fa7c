"""Debian's release order from distro-info-data, and newer suites the archive lacks.

The sample table below has the shape of Debian's ``debian.csv`` (package
distro-info-data: ``version,codename,series,created,release,eol,...``).  The
order bullseye < bookworm < trixie is Debian's (releases 11, 12, 13).  The
"no Release file" cases run real ``apt-get update`` against the archive the
machine's /etc/apt names, with a suite name that cannot exist.
"""

from __future__ import annotations

import datetime as dt
import shutil

import pytest

from harness.debian import apt, releases, sources
from harness.errors import HarnessError

TABLE = """\
version,codename,series,created,release,eol,eol-lts,eol-elts
11,Bullseye,bullseye,2019-07-06,2021-08-14,2024-08-14,2026-08-31,2031-06-30
12,Bookworm,bookworm,2021-08-14,2023-06-10,2026-07-11,2028-06-30,2033-06-30
13,Trixie,trixie,2023-06-10,2025-08-09,2028-08-09,2030-06-30,2035-06-30
14,Forky,forky,2025-08-09
15,Duke,duke,2027-08-01
16,Broken,broken,someday
,Sid,sid,1993-08-16
,Experimental,experimental,1993-08-16
"""
NO_SUCH_SUITE = "igvmharness-no-such-suite"


def test_a_series_counts_from_its_created_date():
    before = releases.releases_from_table(TABLE, dt.date(2027, 7, 31))
    assert before == ("bullseye", "bookworm", "trixie", "forky")
    after = releases.releases_from_table(TABLE, dt.date(2027, 8, 1))
    assert after == ("bullseye", "bookworm", "trixie", "forky", "duke")


def test_the_installed_table_is_read(tmp_path):
    # set-up installs distro-info-data (setup.sh SYSTEM_PACKAGES)
    assert releases.DISTRO_INFO_CSV.is_file(), "distro-info-data is not installed: run ./setup.sh"
    found = releases.releases()
    i = found.index("bullseye")
    assert found[i:i + 3] == ("bullseye", "bookworm", "trixie")
    assert "sid" not in found and "experimental" not in found


def test_without_the_table_the_built_in_list_is_used(tmp_path):
    assert releases.releases(tmp_path / "absent.csv") == releases.KNOWN_RELEASES
    big = tmp_path / "big.csv"
    big.write_bytes(b"x" * (releases.MAX_TABLE_SIZE + 1))
    assert releases.releases(big) == releases.KNOWN_RELEASES


def test_absent_suites_are_remembered_for_a_week(tmp_path):
    day = dt.date(2026, 12, 1)
    apt.record_absent(tmp_path, {"duke"}, day)
    apt.record_absent(tmp_path, {"eel"}, day + dt.timedelta(days=2))
    assert apt.read_absent(tmp_path, day + dt.timedelta(days=6)) == {"duke", "eel"}
    assert apt.read_absent(tmp_path, day + dt.timedelta(days=7)) == {"eel"}
    assert apt.read_absent(tmp_path, day + dt.timedelta(days=9)) == set()


def _real_config(tmp_path, suites, optional):
    archive = sources.debian_archive(sources.read_apt_sources())
    return apt.AptConfig(tmp_path / "apt", archive, suites, (), optional)


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="no apt-get (not Debian)")
def test_a_newer_suite_the_archive_lacks_is_dropped_with_a_note(tmp_path):
    archive = sources.debian_archive(sources.read_apt_sources())
    small = f"{archive.suite}-updates"  # a real suite with a small index
    cfg = _real_config(tmp_path, (small, NO_SUCH_SUITE), (NO_SUCH_SUITE,))
    cfg.update()
    assert cfg.suites == (small,)
    assert len(cfg.notes) == 1 and NO_SUCH_SUITE in cfg.notes[0]
    assert apt.read_absent(cfg.root, dt.date.today()) == {NO_SUCH_SUITE}
    assert cfg.has_lists()


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="no apt-get (not Debian)")
def test_a_required_suite_the_archive_lacks_is_one_error(tmp_path):
    cfg = _real_config(tmp_path, (NO_SUCH_SUITE,), ())
    with pytest.raises(HarnessError) as exc:
        cfg.update()
    msg = str(exc.value)
    assert "\n" not in msg and NO_SUCH_SUITE in msg and "Release" in msg
    assert not cfg.has_lists()
