"""``pytest suites/ --platform=sev-es --dry-run``: the lab preamble of every
selected matrix cell -- QEMU command line, objects, IGVM file, predicted
launch digest, expected verdict, and what the GHCB model saw the guest do --
planned as a lab host runs it (SEV present, KVM), without starting QEMU.

A real run writes the same blocks (harness.matrix.execute.run_cell renders
them before it starts QEMU) into ``<platform>.run.txt``; the dry run writes
``<platform>.dry-run.txt`` beside it, in ``$IGVM_HARNESS_LAB_DIR``
(default ``reports/lab/``).  On a lab host the two diff to nothing when the
run ran what the plan showed; the host's C-bit and reduced-phys-bits are
assumed to be ``--lab-cbitpos`` / ``--lab-reduced-phys-bits`` (51 and 1, as
on AMD EPYC Milan and Genoa) because the run takes them from the host's
CPUID (execute._host_sev_bits).

Registered by the top-level conftest.py and the pytest11 entry points like
the other plugins.  Tests other than matrix cells are listed as not planned.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEADER = "# igvm-harness lab preamble: platform {platform}\n"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("igvm-harness", "IGVM conformance harness")
    group.addoption("--dry-run", action="store_true", default=False,
                    help="print and write the lab preamble of every selected matrix cell (command "
                         "line, objects, predicted digest, expected verdict, GHCB model) as a lab "
                         "host would run it, and run nothing")
    group.addoption("--lab-cbitpos", type=int, default=51, metavar="N",
                    help="with --dry-run: the lab host's C-bit position (CPUID 0x8000001F EBX[5:0])")
    group.addoption("--lab-reduced-phys-bits", type=int, default=1, metavar="N",
                    help="with --dry-run: the lab host's reduced physical address bits")
    group.addoption("--dry-run-as", choices=("lab", "this-host"), default="lab",
                    help="with --dry-run: plan as a lab host with the platform's hardware runs the "
                         "cells (default), or as this host does (what a real run here prints)")


def lab_dir() -> Path:
    return Path(os.environ.get("IGVM_HARNESS_LAB_DIR", REPO / "reports" / "lab"))


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """A dry run plans in this process: no pytest-xdist workers."""
    if config.getoption("--dry-run", False) and getattr(config.option, "numprocesses", None):
        config.option.numprocesses = None
        config.option.dist = "no"


def lab_plan(cell, env):
    """The execute.Plan a lab host with the cell's platform gives it."""
    from harness.matrix.execute import Plan, plan
    p = plan(cell, env)
    if p.skip and cell.syntax == "sev-guest":
        return p                                   # the binary lacks the syntax: as on the host
    if cell.platform == "native":
        accel = env.accel if env.accel != "auto" else "kvm"
        return Plan(accel, None, f"native-{accel}")
    return Plan("kvm", None, "hardware")


def _env(config: pytest.Config):
    from harness.errors import HarnessError
    from harness.expect.table import load
    from harness.matrix.execute import Env
    from harness.plugin import session_caps, _state
    caps = session_caps(config)
    try:
        from harness.matrix.guests import guest_images
        guests = guest_images()
    except HarnessError:
        guests = {}
    qemu = _state(config).qemu or config.getoption("--qemu") or "qemu-system-x86_64"
    return Env(qemu=qemu, caps=caps or _NoCaps(), table=load(), accel=config.getoption("--accel"),
               guests=guests)


class _NoCaps:
    """No QEMU here: plan every cell as if the binary had what it needs."""
    version = None
    early_igvm_file = False
    host = None

    def has(self, what: str) -> bool:
        return True

    def missing(self, what: str) -> str | None:
        return None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    if not config.getoption("--dry-run") or getattr(config, "workerinput", None) is not None:
        return
    from harness.matrix.cells import AbsentSyntax, Cell
    from harness.matrix.execute import prepare
    env = _env(config)
    lab = config.getoption("--dry-run-as") == "lab"
    bits = (config.getoption("--lab-cbitpos"), config.getoption("--lab-reduced-phys-bits")) if lab else None
    blocks, notes, others = [], [], {}
    with tempfile.TemporaryDirectory(prefix="igvmt-dry-run-") as tmp:
        for item in items:
            param = getattr(getattr(item, "callspec", None), "params", {}).get("cell_run")
            if isinstance(param, Cell):
                prep = prepare(param, env, Path(tmp) / "cell", lab_plan(param, env) if lab else None,
                               sev_bits=bits)
                blocks.append((param.id, prep.preamble))
            elif isinstance(param, AbsentSyntax):
                notes.append(f"not planned: {param.message}")
            else:
                path = item.nodeid.split("::")[0]
                others[path] = others.get(path, 0) + 1
    notes += [f"not planned (not matrix cells): {n} tests of {path}" for path, n in sorted(others.items())]
    platform = config.getoption("--platform")
    text = HEADER.format(platform=platform) + "".join(b for _, b in sorted(blocks))
    out = lab_dir() / f"{platform}.dry-run.txt"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        from harness.outputs import write_atomic
        write_atomic(out, text.encode())
        where = f"written to {out}"
    except OSError as exc:
        where = f"not written ({exc})"
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line("")
        for line in text.splitlines():
            tr.write_line(line)
        for note in notes:
            tr.write_line(note)
    config.hook.pytest_deselected(items=list(items))
    items[:] = []
    pytest.exit(f"dry run: {len(blocks)} matrix cells planned, nothing run; plan {where}", returncode=0)


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    """A real run: the preambles of the cells it ran, for diffing with the plan."""
    if getattr(config, "workeroutput", None) is not None or config.getoption("--dry-run"):
        return
    from harness.matrix.pytest_plugin import results
    res = [r for r in results(config) if r.preamble]
    if not res:
        return
    platform = config.getoption("--platform")
    text = HEADER.format(platform=platform) + "".join(r.preamble for r in sorted(res, key=lambda r: r.cell_id))
    out = lab_dir() / f"{platform}.run.txt"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        from harness.outputs import write_atomic
        write_atomic(out, text.encode())
        terminalreporter.write_line(f"lab preamble of {len(res)} cells: {out}")
    except OSError as exc:
        terminalreporter.write_line(f"lab preamble not written: {exc}")
