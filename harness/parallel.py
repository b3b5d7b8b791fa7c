"""pytest plugin: the harness's worker choice -- one more worker than cores, heavy boots first.

A conformance run is mostly QEMU processes, each using about one host
core (TCG's vCPU thread, or KVM), with short gaps in which none is busy (a
QEMU starting, a QMP round trip, a guest waiting on a timer).  So when
pytest-xdist is installed and the command line says nothing about workers,
the harness starts one worker more than the machine has cores: on 2 cores
``pytest suites/`` took 131-133 s with 2 workers, 117-121 s with 3 and
127 s with 4, every verdict the same as the serial run's
(``igvm-harness report compare``; tests/report/test_compare.py):

* serial stays one option away: ``-n 0``, ``-p no:xdist``, or
  ``IGVM_HARNESS_WORKERS=0`` (another number picks that many workers);
* a command line naming single tests (``file.py::test``) runs serially
  (starting workers would cost more than the tests);
* a machine with one core runs serially;
* so does a pytest started by a running test (``PYTEST_CURRENT_TEST`` is
  inherited): the outer run already keeps the cores busy.

Whenever workers run, the distribution mode is ``loadgroup`` in
collection order (unless ``--dist`` is given): the checks that read one
boot record (harness.qemu.records) carry one ``xdist_group`` and land on
one worker, and the collection order is the schedule.  The workers order
it heaviest first: a test marked ``weight(seconds)`` (its TCG boot time on
an idle core, roughly) goes before lighter ones, a group as heavy as its
heaviest member, so the long Linux boots do not end the run alone.

pytest-xdist marks a grouped test by adding ``@group`` to its node id; the
controller takes it off again before any report is written, so JUnit,
JSON and the terminal name a test the same way serial and parallel.

Only from the installed package's entry point: ``pytest_load_initial_conftests``
is not called for plugins a conftest.py registers.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

ENV = "IGVM_HARNESS_WORKERS"
#: Options that decide workers themselves, or want one process
#: (pytest-benchmark's timings refuse workers, and are the machine's alone).
WORKER_FLAGS = ("-n", "--numprocesses", "--dist", "--tx", "-d", "--looponfail", "-f",
                "--collect-only", "--co", "--pdb", "--trace", "--setup-plan",
                "--benchmark-only", "--benchmark-enable")


def _names_workers(args: list[str]) -> bool:
    for arg in args:
        if arg in WORKER_FLAGS or any(arg.startswith(f + "=") for f in WORKER_FLAGS if
                                      f.startswith("--")):
            return True
        if arg.startswith("-n") and arg[2:].strip().isalnum():      # -n2, -nauto
            return True
        if arg.startswith("-p") and "no:xdist" in arg:
            return True
    return "no:xdist" in args


def worker_args(args: list[str], env: dict[str, str] | None = None,
                cpus: int | None = None, have_xdist: bool | None = None) -> list[str]:
    """The arguments the harness adds to ``args`` (see the module docstring)."""
    env = os.environ if env is None else env
    # A pytest-xdist worker parses the controller's original command line
    # again (xdist/remote.py) and must come to the same answer: its
    # "--dist loadgroup" is what makes it mark the groups (the -n it gets
    # is dropped by xdist's worker set-up).
    if have_xdist is None:
        have_xdist = importlib.util.find_spec("xdist") is not None
    if not have_xdist:
        return []
    asked = env.get(ENV, "").strip()
    if _names_workers(args):
        return ["--dist", "loadgroup", "--no-loadscope-reorder"] if (
            _gives_workers(args) and not _gives_dist(args)) else []
    if asked:
        if not asked.isdigit():
            raise pytest.UsageError(f"{ENV}={asked!r}: a number of workers (0: serial)")
        n = int(asked)
        return [] if n == 0 else ["-n", str(n), "--dist", "loadgroup", "--no-loadscope-reorder"]
    if any("::" in a for a in args if not a.startswith("-")):
        return []
    if env.get("PYTEST_CURRENT_TEST"):
        return []
    cpus = cpus if cpus is not None else (len(os.sched_getaffinity(0))
                                          if hasattr(os, "sched_getaffinity") else os.cpu_count())
    if not cpus or cpus < 2:
        return []
    return ["-n", str(cpus + 1), "--dist", "loadgroup", "--no-loadscope-reorder"]


def _gives_workers(args: list[str]) -> bool:
    for i, arg in enumerate(args):
        if arg in ("-n", "--numprocesses"):
            value = args[i + 1] if i + 1 < len(args) else "0"
        elif arg.startswith("--numprocesses="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-n") and len(arg) > 2:
            value = arg[2:]
        else:
            continue
        return value.strip() not in ("0", "")
    return False


def _gives_dist(args: list[str]) -> bool:
    return any(a in ("--dist", "-d") or a.startswith("--dist=") for a in args)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args: list[str]) -> None:
    args[:0] = worker_args(args)


#: Whether this process reports (the controller, or a serial run): only
#: there are node ids renamed (a worker checks its reports' ids).
_REPORTS: list[bool] = [True]


def pytest_configure(config: pytest.Config) -> None:
    _REPORTS[0] = not hasattr(config, "workerinput")
    config.addinivalue_line(
        "markers", "weight(seconds): rough TCG cost on an idle core; under pytest-xdist the"
                   " heaviest tests (and their xdist_group) are scheduled first")


def _weight(item: pytest.Item) -> float:
    mark = item.get_closest_marker("weight")
    return float(mark.args[0]) if mark and mark.args else 0.0


def _group(item: pytest.Item) -> str | None:
    mark = item.get_closest_marker("xdist_group")
    if mark is None:
        return None
    return mark.args[0] if mark.args else mark.kwargs.get("name")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """On xdist workers: heaviest first (groups by their heaviest member);
    stable, so equal weights keep the collection order.  A serial run keeps
    the collection order."""
    if not hasattr(config, "workerinput"):
        return
    group_weight: dict[str, float] = {}
    for item in items:
        g = _group(item)
        if g is not None:
            group_weight[g] = max(group_weight.get(g, 0.0), _weight(item))

    def key(item: pytest.Item) -> float:
        g = _group(item)
        return -(group_weight[g] if g is not None else _weight(item))
    items.sort(key=key)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadgroup``: pytest-xdist's group scheduling, less its rerun
    of a crashed test (below)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    return _scheduler_class()(config, log)


def _scheduler_class():
    from xdist.scheduler import LoadGroupScheduling

    class GroupScheduling(LoadGroupScheduling):
        """pytest-xdist 3.8's LoadScopeScheduling.remove_node puts a dead
        worker's unfinished group back in the queue *with* the test that was
        running when the worker died, which DSession has already reported
        as crashed: the replacement worker runs it again (a test that kills
        its worker would do so again and again).  Here the crashed test
        counts as done, and a group with nothing left is dropped."""

        def remove_node(self, node):
            workload = self.assigned_work.pop(node)
            pending = [nodeid for unit in workload.values()
                       for nodeid, done in unit.items() if not done]
            if not pending:
                return None
            crashed = pending[0]          # xdist's rule: the first unfinished test
            for scope, unit in workload.items():
                if crashed in unit:
                    unit[crashed] = True
                if not all(unit.values()):
                    self.workqueue[scope] = unit
            for other in self.assigned_work:
                self._reschedule(other)
            return crashed
    return GroupScheduling


def plain_nodeid(nodeid: str) -> str:
    """``nodeid`` without pytest-xdist's ``@group`` suffix (xdist's own rule:
    an ``@`` after the last ``]``)."""
    at = nodeid.rfind("@")
    return nodeid[:at] if at > nodeid.rfind("]") and at > nodeid.rfind("::") else nodeid


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logreport(report) -> None:
    """Reports name the test, not its scheduling group (see the module docstring)."""
    if _REPORTS[0]:
        report.nodeid = plain_nodeid(report.nodeid)
