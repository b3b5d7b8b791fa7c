"""A CI cell that wrote no results still gets a column on the dashboard.

Each cell of the CI examples (ci-examples/) writes a marker, ``cell.txt``
(``key=value`` lines: ``platform``, ``accel``, ``label``, ``job``, ``host``,
``url``), into its report directory before anything else.  A cell whose
set-up failed, that the CI engine killed at its timeout or whose pytest died
leaves the marker and no results document; without one its column would
simply be missing, and the dashboard would look better than the night was.
``igvm-harness report lost-cells MARKER...`` writes, beside each marker
without results, a results document with one ``error`` check naming the job
and where its log is.  The dashboard job runs it before ``report merge``.
"""

from __future__ import annotations

from pathlib import Path

from harness import __version__
from harness.errors import HarnessError
from harness.inputs import read_input
from harness.report import writers
from harness.report.model import Check, Report

MARKER = "cell.txt"
#: A marker is a few short lines written by the cell's own script.
MARKER_LIMIT = 4096
KEYS = ("platform", "accel", "label", "job", "host", "url")
RESULTS_GLOBS = ("suite-*.json", "certify-*.json")
CHECK_ID = "ci-cell/results"


def read_marker(path: Path) -> dict[str, str]:
    """The marker's known keys; one clear error for anything else."""
    data = read_input(path, MARKER_LIMIT,
                      lambda size: f"{path}: {size} bytes, not a cell marker "
                                   f"(at most {MARKER_LIMIT})")
    values: dict[str, str] = {}
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or key not in KEYS:
            raise HarnessError(f"{path}:{number}: not a cell marker line (key=value, keys: "
                               f"{', '.join(KEYS)})", 1)
        values[key] = value.strip()
    for key in ("platform", "accel"):
        if not values.get(key):
            raise HarnessError(f"{path}: the cell marker names no {key}", 1)
    return values


def has_results(directory: Path) -> bool:
    return any(next(directory.glob(pattern), None) for pattern in RESULTS_GLOBS)


def _unknown_environment(host: str, accel: str) -> dict:
    """What is known of a cell that wrote nothing: its host and accelerator
    (from the marker); every other field says it is unknown."""
    unknown = "unknown: the cell wrote no results"
    return {"harness_version": __version__, "python": "",
            "host": {"hostname": host, "kernel": "", "os": "", "cpu_model": None,
                     "cpu_vendor": None},
            "qemu": {"path": None, "version": None, "probe": None, "note": unknown},
            "accel": accel,
            "sev": {"dev_sev": False, "kvm_amd": {}, "api_version": None, "build": None,
                    "source": unknown},
            "image": None}


def lost_report(marker: dict[str, str]) -> Report:
    """The results of a cell that produced none: one ``error`` check."""
    platform, accel = marker["platform"], marker["accel"]
    job = marker.get("job") or f"{platform}/{accel}"
    where = f": see its log, {marker['url']}" if marker.get("url") else ": see its log"
    report = Report(
        kind="suite",
        title=marker.get("label") or f"{platform}/{accel}",
        environment=_unknown_environment(marker.get("host") or "unknown", accel),
        subject={"name": "suite", "platform": platform},
    )
    report.checks.append(Check(
        CHECK_ID, "the CI cell wrote its results", "error", group="ci-cell", platform=platform,
        message=f"CI job {job} wrote no results (its set-up failed, it timed out or "
                f"pytest died){where}"))
    return report


def write_lost(markers: list[Path]) -> list[tuple[Path, dict[str, str]]]:
    """Write a results document beside every marker whose directory has none."""
    written = []
    for path in markers:
        if path.name != MARKER:
            raise HarnessError(f"{path}: not a cell marker (expected a file named {MARKER})", 2)
        if has_results(path.parent):
            continue
        marker = read_marker(path)
        paths = writers.write_all(lost_report(marker), path.parent)
        written.append((paths["json"], marker))
    return written
