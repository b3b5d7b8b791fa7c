"""The ``igvm-harness`` command: a thin face over the layers.

Each layer contributes its subcommands through a module exposing
``register(subparsers)``; this file only wires them together and turns
:class:`HarnessError` (and Ctrl-C) into one line and an exit status.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from harness import __version__
from harness.errors import HarnessError

# Modules that add subcommands; each defines register(subparsers) and sets
# ``func`` on its parsers.  Order is the order shown in --help.
COMMAND_MODULES = (
    "harness.igvm.commands",
    "harness.measure.commands",
    "harness.qemu.commands",
    "harness.certify.commands",
    "harness.report.commands",
    "harness.assets.commands",
    "harness.native.commands",
    "harness.reference.commands",
    "harness.ghcb.commands",
)

#: Which module registers each top-level command, so that ``igvm-harness
#: measure ...`` builds one module's parsers instead of all ~20 (argparse
#: costs about 1.5 ms a parser; tests/cli/test_startup.py checks this table
#: against what the modules really register).  A command not listed here
#: builds every parser, so a missing entry costs time, never correctness.
COMMAND_OWNERS = {
    "inspect": "harness.igvm.commands",
    "wrap-ovmf": "harness.igvm.commands",
    "validate": "harness.igvm.commands",
    "measure": "harness.measure.commands",
    "qemu": "harness.qemu.commands",
    "certify": "harness.certify.commands",
    "report": "harness.report.commands",
    "matrix": "harness.report.commands",
    "firmware": "harness.assets.commands",
    "native": "harness.native.commands",
    "oracle": "harness.reference.commands",
    "guest": "harness.ghcb.commands",
}


def _columns() -> int:
    """Terminal width as ``shutil.get_terminal_size`` finds it ($COLUMNS, then
    the terminal on stdout, then 80), without importing shutil (and the
    bz2, lzma and fnmatch it pulls in)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter with the width computed as above: argparse makes
    one per ``add_argument`` (to check metavars), and its own imports shutil
    for the width each time it is not given."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         _columns() - 2 if width is None else width)


class _Parser(argparse.ArgumentParser):
    """Top-level parser; ``add_subparsers`` makes the subcommands' parsers of
    the same class, so they share the formatter unless they name another."""

    def __init__(self, *args, formatter_class=_HelpFormatter, **kwargs) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the subcommands of the module owning
    ``argv[0]`` (``--help`` and unknown commands get all of them)."""
    parser = _Parser(
        prog="igvm-harness",
        description="Build, inspect, validate, measure and boot IGVM files under QEMU.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    owner = COMMAND_OWNERS.get(argv[0]) if argv else None
    for name in (owner,) if owner else COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that layer has no commands yet
                continue
            raise
        module.register(sub)
    return parser


def _terminated(signum, frame):
    raise KeyboardInterrupt(signum)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    # SIGTERM (CI cancel, `kill`) unwinds like Ctrl-C, so that the runner's
    # finally-blocks reap QEMU and remove its socket directory; the default
    # action would end the process with both left behind.
    try:
        previous = signal.signal(signal.SIGTERM, _terminated)
    except ValueError:  # not the main thread (main() called from a worker)
        previous = None
    try:
        return int(args.func(args) or 0)
    except HarnessError as exc:
        print(f"igvm-harness: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        signum = exc.args[0] if exc.args and isinstance(exc.args[0], int) else signal.SIGINT
        print("igvm-harness: " + ("terminated" if signum == signal.SIGTERM else "interrupted"),
              file=sys.stderr)
        return 128 + signum
    except BrokenPipeError:
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
