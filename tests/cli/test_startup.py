"""CLI start-up: each subcommand imports only what it uses (issue 12).

Two kinds of check:

* which modules a command loads (``sys.modules`` after it ran), against a
  list of heavy third-party modules that only some commands need.  This is
  exact and does not depend on the machine's load.
* how long its imports take, from CPython's own ``-X importtime`` lines
  (Python docs, "-X importtime": one line per module, self and cumulative
  microseconds, nesting shown by indentation).  The figure is the sum of
  the cumulative times of the top-level imports made after interpreter
  start-up (``site``, ``encodings`` and what they pull in are the
  interpreter's, not the harness's).  The import times are wall-clock, so a
  loaded machine inflates them: the test takes the best of a few runs.

The program the subprocess runs (:func:`_program`) imports nothing beyond
what the interpreter has loaded before calling ``main`` (no json, no
contextlib), so neither figure counts the test's own machinery.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys

import pytest

from harness import cli
from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import PlatformType
from tests.ovmf_images import synthetic_ovmf

#: Budget for the imports of each command (issue 12: at most 60 ms for
#: ``--help`` and ``measure``).  ``measure`` (an IGVM file, and the classic
#: launch of an OVMF image) reached 18-27 ms / 21-23 ms (least of 9 runs, load
#: 1.6-2.5 on 2 CPUs, CPython 3.11) once its modules stopped using dataclasses
#: and typing (harness/record.py; 51 ms before); its budget keeps it near that
#: with room for a slower machine.  Which modules it must not load is checked
#: exactly by test_measure_path_is_lean.
BUDGET_US = {"--help": 60_000, "measure": 35_000, "measure-classic": 35_000}
RUNS = 9

#: Standard modules that cost several milliseconds (dataclasses pulls in
#: inspect, ast, dis and tokenize; shutil pulls in bz2, lzma, fnmatch) and
#: that the ``measure`` path does without (sev-snp-measure is the yardstick).
MEASURE_NEVER = ("dataclasses", "inspect", "ast", "json", "shutil", "typing", "contextlib")

#: Third-party (and heavy standard) modules no start-up path may load unless
#: the command runs the code that needs them.  ``--help`` and ``measure``
#: need none of them.
HEAVY = ("jinja2", "jsonschema", "junitparser", "cryptography", "qemu", "qemu.qmp", "pexpect",
         "importlib.metadata", "asyncio", "xml.etree.ElementTree", "email", "socket", "pytest")

LINE = re.compile(r"^import time:\s*(\d+) \|\s*(\d+) \|( *)(\S+)\s*$")

#: Interpreter start-up: imported before any harness code runs.
STARTUP_ROOTS = {"site", "encodings", "_frozen_importlib_external", "zipimport", "codecs",
                 "_signal", "_abc", "abc", "io", "_io", "marshal", "posix", "time",
                 "_codecs", "_thread", "_warnings", "_weakref", "winreg", "_imp",
                 "encodings.utf_8", "encodings.aliases", "encodings.latin_1"}


def parse_importtime(stderr: str) -> list[tuple[str, int, int, int]]:
    """(module, self_us, cumulative_us, depth) per ``-X importtime`` line."""
    out = []
    for line in stderr.splitlines():
        m = LINE.match(line)
        if m:
            out.append((m.group(4), int(m.group(1)), int(m.group(2)), len(m.group(3)) // 2))
    return out


def top_level_after_startup(rows) -> dict[str, int]:
    """Cumulative microseconds of each top-level import made after start-up."""
    return {name: cum for name, _self, cum, depth in rows
            if depth == 0 and name not in STARTUP_ROOTS}


#: As installed: bytecode caches are written and read (an environment that sets
#: PYTHONDONTWRITEBYTECODE would otherwise compile every harness module on every run).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _run(code: str, cwd) -> tuple[dict[str, int], list[str]]:
    """Run ``code`` under ``-X importtime``; its stdout's last line lists module names."""
    res = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True,
                         text=True, cwd=cwd, timeout=60, stdin=subprocess.DEVNULL, env=ENV)
    assert res.returncode == 0, res.stderr[-500:]
    modules = res.stdout.strip().splitlines()[-1].split()
    rows = parse_importtime(res.stderr)
    assert rows, "no -X importtime lines: " + res.stderr[-300:]
    return top_level_after_startup(rows), modules


def _program(argv: list[str]) -> str:
    """Run the CLI like the console script does (output to /dev/null), then
    write the names in sys.modules, space-separated, to the real stdout."""
    return ("import os, sys\n"
            "sys.stdout = sys.stderr = open(os.devnull, 'w')\n"
            "from harness.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "sys.__stdout__.write(' '.join(sorted(sys.modules)) + '\\n')\n")


@pytest.fixture(scope="module")
def snp_image(tmp_path_factory):
    b = IgvmBuilder()
    b.platform(PlatformType.SEV_SNP)
    b.pages(0x100000, bytes(range(256)) * 64)  # 4 pages
    path = tmp_path_factory.mktemp("startup") / "snp.igvm"
    b.write(path)
    return path


@pytest.fixture(scope="module")
def ovmf_image(tmp_path_factory):
    """A synthetic OVMF image (tests/ovmf_images.py): ``measure FW.fd`` takes
    the classic-launch path for it, as for Debian's OVMF.amdsev.fd."""
    path = tmp_path_factory.mktemp("startup") / "OVMF.fd"
    path.write_bytes(synthetic_ovmf())
    return path


@pytest.fixture
def commands(snp_image, ovmf_image) -> dict[str, list[str]]:
    return {"--help": ["--help"],
            "measure": ["measure", str(snp_image), "--platform", "sev-snp"],
            "measure-classic": ["measure", str(ovmf_image), "--platform", "sev-snp"]}


@pytest.mark.parametrize("name", ["--help", "measure", "measure-classic"])
def test_no_heavy_modules(name, commands, tmp_path):
    _times, modules = _run(_program(commands[name]), tmp_path)
    assert "harness.cli" in modules
    loaded = sorted(set(HEAVY) & set(modules))
    assert not loaded, f"`igvm-harness {name}` imports {loaded}"


@pytest.mark.parametrize("name", ["measure", "measure-classic"])
def test_measure_path_is_lean(name, commands, tmp_path):
    """``measure`` loads none of MEASURE_NEVER (sys.modules after the command
    ran in a fresh interpreter), and it did measure (the program's own
    imports are only os and sys, both loaded before it starts)."""
    _times, modules = _run(_program(commands[name]), tmp_path)
    assert "harness.measure.measure_snp" in modules
    if name == "measure-classic":
        assert "harness.measure.classic_ovmf" in modules
    loaded = sorted(set(MEASURE_NEVER) & set(modules))
    assert not loaded, f"`igvm-harness {name}` imports {loaded}"


#: What ``measure FW.fd`` (the classic launch of an OVMF image) does without:
#: the IGVM model and parser, the walk (issue 19) and uuid (its GUIDs are
#: three byte swaps; uuid imports ``platform``).
CLASSIC_NEVER = ("harness.igvm.parser", "harness.igvm.model", "harness.igvm.walk", "uuid")


def test_classic_measure_skips_the_igvm_model(commands, tmp_path):
    _times, modules = _run(_program(commands["measure-classic"]), tmp_path)
    assert "harness.measure.classic_ovmf" in modules
    loaded = sorted(set(CLASSIC_NEVER) & set(modules))
    assert not loaded, f"`igvm-harness measure FW.fd` imports {loaded}"


@pytest.mark.parametrize("name", ["measure", "measure-classic"])
def test_measure_compiles_no_code(name, commands, tmp_path):
    """No compile() at run time (harness.record builds a class's first
    instances without compiling its initialiser; the first compile of a
    process costs ~1 ms): only bytecode from the caches runs."""
    code = ("import builtins, os, sys\n"
            "n = []\n"
            "real = builtins.compile\n"
            "builtins.compile = lambda *a, **k: (n.append(str(a[1])), real(*a, **k))[1]\n"
            + _program(commands[name]).replace("sys.__stdout__.write(' '.join(sorted(sys.modules)) + '\\n')",
                                               "sys.__stdout__.write(' '.join(n) + '\\n')"))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         timeout=60, stdin=subprocess.DEVNULL, env=ENV)
    assert res.returncode == 0, res.stderr[-500:]
    assert res.stdout.strip() == "", f"`igvm-harness {name}` compiled: {res.stdout.strip()}"


def test_lean_names_are_real_modules():
    for name in MEASURE_NEVER:
        importlib.import_module(name)


@pytest.mark.parametrize("name", ["--help", "measure", "measure-classic"])
def test_import_budget(name, commands, tmp_path):
    """At most BUDGET_US[name] of imports: per top-level import, the least
    cumulative time seen over up to RUNS runs (a run preempted by other load
    inflates the modules it was importing at the time, rarely the same ones
    twice)."""
    budget = BUDGET_US[name]
    best: dict[str, int] = {}
    _run(_program(commands[name]), tmp_path)  # warm-up: bytecode caches written
    for _ in range(RUNS):
        times, _modules = _run(_program(commands[name]), tmp_path)
        for mod, us in times.items():
            best[mod] = min(us, best.get(mod, us))
        if sum(best.values()) <= budget:
            break
    assert "harness.cli" in best, "the CLI was not imported after start-up?"
    total = sum(best.values())
    worst = sorted(best.items(), key=lambda kv: -kv[1])[:6]
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if total > budget and load > cpus:
        # wall-clock figures from a machine running more than it has CPUs for
        # say nothing about the code; the sys.modules test above still ran.
        # An xfail, not a skip: no capability is missing, the figure is void.
        pytest.xfail(f"host too loaded for an import-time figure (load {load:.1f} on {cpus} CPUs; "
                    f"{total / 1000:.1f} ms measured)")
    assert total <= budget, (f"`igvm-harness {name}`: {total / 1000:.1f} ms of imports "
                             f"(least of {RUNS} runs per import; budget {budget / 1000:.0f} ms); "
                             f"largest: {worst}")


def test_every_command_module_registers_lazily():
    """Registering every COMMAND_MODULES entry (what --help and every command
    do first) loads none of the heavy modules: a new command module must keep
    them inside its command functions (INTERFACES.md, "Commands")."""
    code = ("import json, sys, argparse, importlib\n"
            "from harness.cli import COMMAND_MODULES\n"
            "sub = argparse.ArgumentParser().add_subparsers()\n"
            "for name in COMMAND_MODULES:\n"
            "    try:\n        importlib.import_module(name).register(sub)\n"
            "    except ModuleNotFoundError as exc:\n"
            "        if exc.name != name: raise\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-500:]
    modules = set(json.loads(res.stdout.strip().splitlines()[-1]))
    loaded = sorted(set(HEAVY) & modules)
    assert not loaded, f"registering {cli.COMMAND_MODULES} imports {loaded}"


def test_parse_importtime_reads_nesting():
    text = ("import time: self [us] | cumulative | imported package\n"
            "import time:       100 |        100 |   b\n"
            "import time:        50 |        150 | a\n"
            "import time:       900 |        900 | site\n")
    rows = parse_importtime(text)
    assert rows == [("b", 100, 100, 1), ("a", 50, 150, 0), ("site", 900, 900, 0)]
    assert top_level_after_startup(rows) == {"a": 150}


def test_heavy_names_are_real_modules():
    """The forbidden list names importable modules (a typo would make the
    sys.modules check vacuous)."""
    for name in ("jinja2", "jsonschema", "junitparser", "pexpect"):
        importlib.import_module(name)


def test_command_constants_match_their_owners():
    """The values repeated in certify/commands.py and report/commands.py to keep them light."""
    from harness.certify import commands as certify_commands
    from harness.certify.model import BOOT_TIMEOUT
    from harness.certify.profile import PLATFORM_CHOICES
    from harness.report import commands, merge
    assert certify_commands.BOOT_TIMEOUT == BOOT_TIMEOUT
    assert certify_commands.CERTIFY_PLATFORMS == PLATFORM_CHOICES
    assert commands.DEFAULT_HISTORY == merge.DEFAULT_HISTORY


def test_measure_platforms_match_the_planner():
    from harness.measure import commands
    from harness.measure.pages import PLATFORM_NAMES

    assert commands.MEASURE_PLATFORMS == tuple(sorted(PLATFORM_NAMES))


def test_command_owners_match_the_registered_commands():
    """cli.COMMAND_OWNERS names, for every top-level command, the module that
    really registers it (a stale entry would send a command to a module that
    does not know it)."""
    import argparse

    from harness import cli
    registered = {}
    for name in cli.COMMAND_MODULES:
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers(dest="command")
        importlib.import_module(name).register(sub)
        for command in sub.choices:
            registered[command] = name
    assert cli.COMMAND_OWNERS == registered


def test_a_command_builds_only_its_owners_parsers():
    from harness import cli
    parser = cli.build_parser(["measure", "x"])
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == {"measure"}
    assert set(next(a for a in cli.build_parser(["--help"])._actions
                    if a.dest == "command").choices) == set(cli.COMMAND_OWNERS)
