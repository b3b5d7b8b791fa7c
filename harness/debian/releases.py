"""Debian's release codenames in order, read from Debian's own table.

Why: the harness fetches packages that only newer suites carry
(``ovmf-amdsev``), so its apt configuration lists the configured release and
every newer one.  A new codename opens every two years; a table typed into
the harness goes stale then.  Debian ships the table as the package
``distro-info-data`` (``/usr/share/distro-info/debian.csv``, columns
``version,codename,series,created,release,eol,...``; set-up installs it).
A series counts once its ``created`` date has passed: that is the day its
suite opened in the archive, and rows for later codenames are already in the
table before then (a suite without a Release file makes ``apt-get update``
fail, so listing it early would break every fetch).  Without the table the
harness falls back to :data:`KNOWN_RELEASES`, and says so.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
from pathlib import Path

DISTRO_INFO_CSV = Path("/usr/share/distro-info/debian.csv")
#: The table is a few KiB; anything past this is not it.
MAX_TABLE_SIZE = 1 << 20
#: Used only when distro-info-data is not installed (Debian's order, 2026).
KNOWN_RELEASES: tuple[str, ...] = ("buster", "bullseye", "bookworm", "trixie", "forky")
#: Rows of the table that are not numbered releases.
NOT_RELEASES = frozenset({"sid", "experimental"})


def releases_from_table(text: str, today: _dt.date) -> tuple[str, ...]:
    """The numbered releases of a debian.csv text whose suites exist by *today*, oldest first."""
    out: list[str] = []
    for row in csv.DictReader(io.StringIO(text)):
        series = (row.get("series") or "").strip()
        if not series or series in NOT_RELEASES or not (row.get("version") or "").strip():
            continue
        try:
            created = _dt.date.fromisoformat((row.get("created") or "").strip())
        except ValueError:
            continue
        if created <= today:
            out.append(series)
    return tuple(out)


def releases(table: Path = DISTRO_INFO_CSV, today: _dt.date | None = None) -> tuple[str, ...]:
    """Debian's releases oldest first: from distro-info-data, else :data:`KNOWN_RELEASES`."""
    today = today or _dt.date.today()
    try:
        if table.stat().st_size > MAX_TABLE_SIZE:
            return KNOWN_RELEASES
        found = releases_from_table(table.read_text(errors="replace"), today)
    except OSError:
        return KNOWN_RELEASES
    return found or KNOWN_RELEASES


def source() -> str:
    """Where :func:`releases` reads from, for messages."""
    return str(DISTRO_INFO_CSV) if DISTRO_INFO_CSV.is_file() else "the harness's built-in list"
