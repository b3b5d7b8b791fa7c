"""Compile the harness and pytest's assertion-rewritten modules once, at set-up.

Why: with ``PYTHONDONTWRITEBYTECODE`` set (usual in CI images and on this
project's machines) nothing is cached, and every pytest process -- the main
run, each xdist worker, each pytest a test or ``igvm-harness matrix run``
starts -- parses and rewrites the asserts of every module pytest marks for
rewriting: the conftests and test modules, and every module of each
distribution that declares a pytest plugin (the whole ``harness`` package,
``hypothesis``, ``pytest_benchmark``, ``xdist``:
_pytest/config/__init__.py ``_mark_plugins_for_rewrite``).  That was about
1.5 s of each process's 2.2 s on the suites' shortest selection, and the
whole test command went from 5 min 02 s to 3 min 45 s once cached.

pip compiles every package it installs whatever that variable says; set-up
does the same for this repository: plain bytecode for the harness's own
processes (``compileall``), and one ``pytest --collect-only`` with bytecode
writing on, which leaves pytest's rewritten ``*-pytest-<version>.pyc``
beside each module.  Nothing is a verdict: pytest and Python check each
cached file against its source's size and mtime and compile again on any
change.
"""

from __future__ import annotations

import compileall
import os
import subprocess
import sys
from pathlib import Path

#: Repository packages imported by processes of their own (the CLI).  A
#: script run by path (.ci/skips.py) is compiled afresh whatever is cached.
PACKAGES = ("harness",)
#: pytest's rewritten bytecode (_pytest/assertion/rewrite.py PYTEST_TAG).
REWRITTEN_GLOB = "*-pytest-*.pyc"


def compile_packages(repo: Path) -> bool:
    """Plain bytecode of the repository's own packages; ``True`` when all compiled."""
    ok = True
    for name in PACKAGES:
        if (repo / name).is_dir():
            ok = compileall.compile_dir(str(repo / name), quiet=1, workers=0) and ok
    return ok


def collect_with_bytecode(repo: Path, pytest_args: list[str] | None = None,
                          python: str = sys.executable) -> subprocess.CompletedProcess:
    """One ``pytest --collect-only`` in ``repo`` with bytecode writing on, so
    that pytest writes its rewritten modules (plugins, conftests, tests)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["IGVM_HARNESS_WORKERS"] = "0"
    args = [python, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
            *(pytest_args or [])]
    return subprocess.run(args, cwd=repo, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)


def rewritten(root: Path) -> list[Path]:
    """pytest's rewritten bytecode files under ``root``."""
    return sorted(root.rglob(REWRITTEN_GLOB))


def main(argv: list[str] | None = None) -> int:
    repo = Path(argv[0] if argv else ".").resolve()
    if not compile_packages(repo):
        print("bytecode: a package did not compile (see above)", file=sys.stderr)
        return 1
    proc = collect_with_bytecode(repo)
    if proc.returncode not in (0, 5):
        tail = proc.stdout.strip().splitlines()[-1:] or ["no output"]
        print(f"bytecode: pytest --collect-only exited {proc.returncode}: {tail[0]}",
              file=sys.stderr)
        return 1
    print(f"bytecode: {len(rewritten(repo))} rewritten modules cached in the repository")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
