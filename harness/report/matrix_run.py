"""``igvm-harness matrix run MATRIX.toml``: QEMU builds x platforms x accelerators, locally.

A matrix description names QEMU builds (a binary path, or ``build`` for the
harness's own QEMU-under-test from discovery), platforms, accelerators, the
pytest arguments to run in every cell and, optionally, vendor images to
certify in every cell.  Each cell is one ``pytest`` process (so a crash or
hang in one cell cannot take the others along) whose results the report
collector writes as JSON; at the end all cells are merged into one dashboard.

This is a local loop, not a scheduler: across machines, the CI engine runs
one matrix per runner and ``report merge`` combines the artifacts (see
``ci-examples/``).

Example::

    name = "nightly"
    platforms = ["native", "sev-es"]
    accels = ["tcg", "kvm"]
    pytest_args = ["suites/", "-q"]
    images = []                       # vendor images certified in each cell
    timeout = 3600                    # seconds per cell

    [[qemu]]
    name = "under-test"               # the harness's QEMU (discovery order)

    [[qemu]]
    name = "lab-build"
    path = "/opt/qemu-10.2/bin/qemu-system-x86_64"

    [[qemu]]
    name = "my-tree"
    source = "~/src/qemu"             # built first with `qemu build --source` (cached)

A ``source`` entry is built (or taken from the cache) by
``harness.qemu.build.build`` before the cells run; the QEMU-under-test the
harness uses by default is left as it was.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness.errors import HarnessError
from harness.inputs import read_text_input
from harness.report import schema
from harness.report.model import utc_now

PLATFORMS = ("auto", "native", "sev", "sev-es", "sev-snp")
ACCELS = ("auto", "kvm", "tcg")
_KEYS = {"name", "platforms", "accels", "pytest_args", "images", "timeout", "qemu"}


@dataclass
class Qemu:
    name: str
    path: str | None = None
    source: str | None = None  # a `qemu build --source` argument, built before the cells


@dataclass
class Spec:
    name: str
    qemus: list[Qemu]
    platforms: list[str]
    accels: list[str]
    pytest_args: list[str]
    images: list[Path]
    timeout: float
    source: Path


@dataclass
class Cell:
    qemu: Qemu
    platform: str
    accel: str

    @property
    def label(self) -> str:
        return f"qemu={self.qemu.name} platform={self.platform} accel={self.accel}"

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{self.qemu.name}-{self.platform}-{self.accel}")


@dataclass
class CellResult:
    cell: Cell
    summary: str
    failed: bool
    json_files: list[Path] = field(default_factory=list)
    log: Path | None = None


def _list(raw: dict, key: str, where: str, default: list | None = None) -> list:
    value = raw.get(key, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HarnessError(f"{where}: '{key}' must be a list of strings", 1)
    return value


def load_spec(path: str | Path) -> Spec:
    """Read and check a matrix description (one clear error per problem)."""
    path = Path(path)
    text = read_text_input(path, "TOML")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HarnessError(f"{path}: not TOML: {exc}", 1) from None
    unknown = set(raw) - _KEYS
    if unknown:
        raise HarnessError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} "
                           f"(known: {', '.join(sorted(_KEYS))})", 1)
    platforms = _list(raw, "platforms", str(path), ["auto"])
    accels = _list(raw, "accels", str(path), ["auto"])
    for value, allowed, key in ((platforms, PLATFORMS, "platforms"), (accels, ACCELS, "accels")):
        bad = [v for v in value if v not in allowed]
        if bad or not value:
            raise HarnessError(f"{path}: '{key}' must list some of {', '.join(allowed)}"
                               + (f" (not {', '.join(bad)})" if bad else ""), 1)
        if len(set(value)) != len(value):  # the cells are a product: repeats multiply work
            raise HarnessError(f"{path}: '{key}' lists a value twice; the limit is each of "
                               f"{', '.join(allowed)} at most once", 1)
    entries = raw.get("qemu", [{"name": "under-test"}])
    if not isinstance(entries, list):
        raise HarnessError(f"{path}: 'qemu' must be [[qemu]] tables (name, path or source)", 1)
    qemus = []
    for i, q in enumerate(entries):
        if not isinstance(q, dict) or not isinstance(q.get("name"), str):
            raise HarnessError(f"{path}: [[qemu]] entry {i + 1} needs a name", 1)
        qpath, qsource = q.get("path"), q.get("source")
        if qpath is not None and qsource is not None:
            raise HarnessError(f"{path}: qemu '{q['name']}': give path or source, not both", 1)
        if qpath is not None:
            qpath = os.path.expanduser(str(qpath))
            if not os.access(qpath, os.X_OK):
                raise HarnessError(f"{path}: qemu '{q['name']}': {qpath} is not an "
                                   "executable file", 1)
        if qsource is not None:
            qsource = str(qsource)
            if not qsource.startswith("debian"):
                qsource = os.path.expanduser(qsource)
        unknown_q = set(q) - {"name", "path", "source"}
        if unknown_q:
            raise HarnessError(f"{path}: qemu '{q['name']}': unknown key(s) "
                               f"{', '.join(sorted(unknown_q))}", 1)
        qemus.append(Qemu(q["name"], qpath, qsource))
    if len({q.name for q in qemus}) != len(qemus):
        raise HarnessError(f"{path}: [[qemu]] names must be unique", 1)
    images = [Path(os.path.expanduser(p)) for p in _list(raw, "images", str(path), [])]
    for image in images:
        if not image.is_file():
            raise HarnessError(f"{path}: image {image}: no such file", 1)
    timeout = raw.get("timeout", 3600)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise HarnessError(f"{path}: 'timeout' must be a positive number of seconds", 1)
    return Spec(name=str(raw.get("name", path.stem)), qemus=qemus, platforms=platforms,
                accels=accels, pytest_args=_list(raw, "pytest_args", str(path), ["suites/"]),
                images=images, timeout=float(timeout), source=path)


def split_pytest_args(text: str) -> list[str]:
    """``--pytest-args``: shell words, one clear error when unbalanced."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise HarnessError(f"--pytest-args: {exc}", 2) from None
    if not words:
        raise HarnessError("--pytest-args: give at least one argument (e.g. suites/)", 2)
    return words


def expand(spec: Spec) -> list[Cell]:
    return [Cell(q, p, a) for q, p, a in itertools.product(spec.qemus, spec.platforms,
                                                          spec.accels)]


def build_qemus(spec: Spec, progress: Callable[[str], None] = lambda line: None) -> None:
    """Build (or take from the cache) every ``source`` QEMU, keeping the
    harness's default QEMU-under-test what it was."""
    todo = [q for q in spec.qemus if q.source and not q.path]
    if not todo:
        return
    from harness.qemu import build

    previous = build.current_binary()
    try:
        for q in todo:
            progress(f"qemu {q.name}: building from {q.source} (cached when unchanged) ...")
            q.path = str(build.build(q.source).binary)
            progress(f"qemu {q.name}: {q.path}")
    finally:
        if previous is not None:
            build.set_current(build.cache_root(), previous.parent.parent)


def default_output(spec: Spec) -> Path:
    stamp = re.sub(r"[^0-9T]", "", utc_now())[:15]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", spec.name).lstrip(".") or "matrix"  # stays in reports/
    return Path("reports") / f"matrix-{name}-{stamp}Z"


def _collector_in_entry_points() -> bool:
    return any(ep.value.startswith("harness.report.pytest_collect")
               for ep in importlib.metadata.entry_points(group="pytest11"))


def collector_args() -> list[str]:
    """``-p harness.report.pytest_collect`` unless the collector is already
    an installed pytest11 plugin (then ``-p`` would register it twice)."""
    return [] if _collector_in_entry_points() else ["-p", "harness.report.pytest_collect"]


def pytest_command(spec: Spec, cell: Cell, outdir: Path) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", *spec.pytest_args, "--platform", cell.platform,
           "--accel", cell.accel, "--igvm-report-dir", str(outdir),
           "--igvm-report-label", f"{spec.name}: {cell.label}"]
    if cell.qemu.path:
        cmd += ["--qemu", cell.qemu.path]
    cmd[3:3] = collector_args()
    return cmd


def certify_command(cell: Cell, image: Path, outdir: Path) -> list[str]:
    cmd = [sys.executable, "-m", "harness.cli", "certify", str(image), "--platform",
           cell.platform, "--accel", cell.accel, "--output", str(outdir), "--quiet"]
    if cell.qemu.path:
        cmd += ["--qemu", cell.qemu.path]
    return cmd


def cell_env(celldir: Path) -> dict[str, str]:
    """The environment of a cell's steps: the conformance matrix's own tables
    (``$IGVM_HARNESS_MATRIX_DIR``, else ``reports/matrix/`` of the checkout,
    where every cell would overwrite the last) stay in the cell's directory."""
    return {**os.environ, "IGVM_HARNESS_MATRIX_DIR": str((celldir / "matrix").resolve())}


def _run_logged(cmd: list[str], log: Path, timeout: float,
                env: dict[str, str] | None = None) -> tuple[int | None, float]:
    """Run one step with its output in ``log``; killed as a group on timeout
    or Ctrl-C so that no QEMU or pytest outlives the matrix."""
    t0 = time.monotonic()
    with open(log, "ab") as out:
        out.write(("$ " + shlex.join(cmd) + "\n").encode())
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            return proc.wait(timeout=timeout), time.monotonic() - t0
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            out.write(f"\n[matrix] killed after {timeout:g} s\n".encode())
            return None, time.monotonic() - t0
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise


def _summarise(paths: list[Path]) -> tuple[str, bool]:
    totals: dict[str, int] = {}
    failed = False
    for path in paths:
        doc = schema.load(path)
        for key, value in doc["summary"].items():
            if isinstance(value, int) and key != "total":
                totals[key] = totals.get(key, 0) + value
        failed |= doc["summary"]["verdict"] == "fail"
    text = ", ".join(f"{v} {k}" for k, v in totals.items() if v) or "no results"
    return text, failed


def run(spec: Spec, cells: list[Cell], outdir: Path,
        progress: Callable[[str], None] = lambda line: None) -> list[CellResult]:
    """Run every cell; returns per-cell summaries and the JSON results written."""
    outdir.mkdir(parents=True, exist_ok=True)
    results = []
    for index, cell in enumerate(cells, 1):
        celldir = outdir / "cells" / cell.slug
        celldir.mkdir(parents=True, exist_ok=True)
        log = celldir / "run.log"
        progress(f"[{index}/{len(cells)}] {cell.label}: pytest {shlex.join(spec.pytest_args)} ...")
        env = cell_env(celldir)
        rc, took = _run_logged(pytest_command(spec, cell, celldir), log, spec.timeout, env)
        notes = []
        if rc is None:
            notes.append(f"pytest killed after {spec.timeout:g} s")
        elif rc not in (0, 1, 5):  # 5: nothing collected; 2-4: usage/internal errors
            notes.append(f"pytest exit status {rc}")
        for image in spec.images:
            progress(f"[{index}/{len(cells)}] {cell.label}: certify {image.name} ...")
            crc, _ = _run_logged(certify_command(cell, image, celldir), log, spec.timeout, env)
            if crc not in (0, 1):
                notes.append(f"certify {image.name}: exit status {crc}")
        jsons = sorted(celldir.glob("*.json"))
        summary, failed = _summarise(jsons)
        if notes:
            summary += " [" + "; ".join(notes) + f"; see {log}]"
            failed = True
        progress(f"[{index}/{len(cells)}] {cell.label}: {summary} ({took:.0f} s)")
        results.append(CellResult(cell, summary, failed, jsons, log))
    return results

