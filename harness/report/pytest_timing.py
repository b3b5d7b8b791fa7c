"""Where a session's time goes: per suite, per boot, QEMU start vs guest run.

pytest's ``--durations`` names slow tests; a conformance run needs to know
more: how many QEMU boots a suite made, how much of each was QEMU building
the machine (start to the QMP greeting) and how much the guest ran, and how
many checks read a boot another check already made (harness.qemu.records).

Every finished QEMU run and every boot record handed out again
(harness.qemu.runner observers) is noted against the test phase it happened in,
carried on the test report (``report.igvm_boots``: plain data, so pytest-xdist
ships it from the workers), and summed up by the process that prints:

* always, one line: ``igvm-harness time: ... slowest: ...``;
* with ``-v``: a table per suite and the slowest tests with their boots.

Wall time figures are as measured: a loaded machine shows in them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

_CURRENT: list[dict] | None = None


def _note(outcome, fresh: bool) -> None:
    if _CURRENT is not None:
        _CURRENT.append({"fresh": fresh, "status": outcome.status.value,
                         "start": outcome.qmp_at, "total": outcome.duration,
                         "cpu": outcome.cpu_seconds or 0.0})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    global _CURRENT
    _CURRENT = []
    try:
        yield
    finally:
        _CURRENT = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    global _CURRENT
    if _CURRENT is not None:
        report.igvm_boots = list(_CURRENT)
        _CURRENT = []


# ------------------------------------------------------------- summing up
@dataclass
class _Row:
    tests: int = 0
    seconds: float = 0.0
    boots: int = 0
    shared: int = 0
    start: float = 0.0
    guest: float = 0.0
    cpu: float = 0.0

    def add_boots(self, boots: list[dict]) -> None:
        for b in boots:
            if not b.get("fresh"):
                self.shared += 1
                continue
            self.boots += 1
            self.cpu += b.get("cpu") or 0.0
            start = b.get("start")
            total = b.get("total") or 0.0
            if start is None:            # QEMU never answered QMP: all of it was start-up
                self.start += total
            else:
                self.start += start
                self.guest += max(0.0, total - start)


@dataclass
class _Timing:
    t0: float = field(default_factory=time.monotonic)
    suites: dict[str, _Row] = field(default_factory=dict)
    tests: dict[str, _Row] = field(default_factory=dict)

    def add(self, report) -> None:
        boots = getattr(report, "igvm_boots", None) or []
        suite = "/".join(report.nodeid.split("::", 1)[0].split("/")[:2])
        for rows, key in ((self.suites, suite), (self.tests, report.nodeid)):
            row = rows.setdefault(key, _Row())
            if report.when == "setup":
                row.tests += 1
            row.seconds += max(report.duration, 0.0)
            row.add_boots(boots)


_KEY = pytest.StashKey[_Timing]()
#: The printing process's timing (pytest_runtest_logreport gets no config).
_SESSION: list[_Timing] = []


def pytest_configure(config: pytest.Config) -> None:
    from harness.qemu import runner
    runner.add_observer(_note)
    if not hasattr(config, "workerinput"):      # a pytest-xdist worker prints nothing
        config.stash[_KEY] = _Timing()
        _SESSION[:] = [config.stash[_KEY]]


def pytest_unconfigure(config: pytest.Config) -> None:
    from harness.qemu import runner
    runner.remove_observer(_note)
    _SESSION.clear()


def pytest_runtest_logreport(report) -> None:
    if _SESSION:
        _SESSION[0].add(report)


def _short(nodeid: str) -> str:
    """``file.py::test[params]`` of a node id (parameters may hold slashes)."""
    path, _, rest = nodeid.partition("::")
    return f"{path.rsplit('/', 1)[-1]}::{rest}" if rest else path


def _fmt(s: float) -> str:
    return f"{s:.1f} s" if s < 600 else f"{s / 60:.1f} min"


def lines(timing: _Timing, verbose: bool, wall: float) -> list[str]:
    """The summary: one line, and with ``verbose`` the tables."""
    if not timing.tests:
        return []
    total = _Row()
    for row in timing.suites.values():
        total.tests += row.tests
        total.seconds += row.seconds
        total.boots += row.boots
        total.shared += row.shared
        total.start += row.start
        total.guest += row.guest
        total.cpu += row.cpu
    slowest = sorted(timing.tests.items(), key=lambda kv: -kv[1].seconds)[:3]
    head = (f"igvm-harness time: {_fmt(wall)} wall, {_fmt(total.seconds)} in tests;"
            f" {total.boots} QEMU runs (start {_fmt(total.start)}, guest {_fmt(total.guest)},"
            f" QEMU CPU {_fmt(total.cpu)}),"
            f" {total.shared} shared boots; slowest: "
            + ", ".join(f"{_short(nodeid)} ({_fmt(row.seconds)})" for nodeid, row in slowest))
    out = [head]
    if not verbose:
        return out
    out.append("")
    out.append(f"{'suite':<28} {'tests':>6} {'time':>9} {'runs':>6} {'start':>9} {'guest':>9}"
               f" {'QEMU CPU':>9} {'shared':>7}")
    for suite, row in sorted(timing.suites.items(), key=lambda kv: -kv[1].seconds):
        out.append(f"{suite:<28} {row.tests:>6} {_fmt(row.seconds):>9} {row.boots:>6}"
                   f" {_fmt(row.start):>9} {_fmt(row.guest):>9} {_fmt(row.cpu):>9} {row.shared:>7}")
    out.append("")
    out.append("slowest tests (time; QEMU runs: start + guest, QEMU CPU; shared boots read):")
    for nodeid, row in sorted(timing.tests.items(), key=lambda kv: -kv[1].seconds)[:15]:
        out.append(f"  {_fmt(row.seconds):>9}  {row.boots} runs ({_fmt(row.start)} + "
                   f"{_fmt(row.guest)}, CPU {_fmt(row.cpu)}), {row.shared} shared  {nodeid}")
    return out


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    timing = config.stash.get(_KEY, None)
    if timing is None or hasattr(config, "workerinput"):
        return
    text = lines(timing, config.option.verbose >= 1, time.monotonic() - timing.t0)
    if text:
        terminalreporter.write_sep("-", "igvm-harness timing")
        for line in text:
            terminalreporter.write_line(line)
