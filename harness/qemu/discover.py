"""Which QEMU binary is under test.

Order (issue 3): ``--qemu``, then ``$QEMU``, then the harness's own build in
the cache, then ``qemu-system-x86_64`` on PATH *if it has IGVM* (distribution
QEMUs usually do not, and a QEMU without IGVM cannot be under test).  An
explicit choice is taken as given, even without IGVM: the probe then says
what it lacks.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from harness.errors import HarnessError
from harness.qemu import build
from harness.qemu.probe import Capabilities, probe, resolve_binary

PATH_NAME = "qemu-system-x86_64"


@dataclass
class Discovered:
    path: str
    how: str  # "--qemu" | "$QEMU" | "cache" | "PATH"


def find(explicit: str | None = None, env: Mapping[str, str] | None = None,
         cache: Path | None = None,
         probe_fn: Callable[[str], Capabilities] = probe) -> tuple[Discovered | None, list[str]]:
    """The binary to use, or None, plus the reasons earlier candidates were passed over."""
    env = os.environ if env is None else env
    notes: list[str] = []
    if explicit:
        return Discovered(resolve_binary(explicit), "--qemu"), notes
    if env.get("QEMU"):
        try:
            return Discovered(resolve_binary(env["QEMU"]), "$QEMU"), notes
        except HarnessError as exc:  # a forgotten export should say where it came from
            raise HarnessError(f"$QEMU: {exc}") from None
    built = build.current_binary(cache)
    if built is not None:
        return Discovered(str(built), "cache"), notes
    notes.append(f"no QEMU-under-test built in {cache or build.cache_root()}")
    on_path = shutil.which(PATH_NAME, path=env.get("PATH"))
    if on_path:
        why = probe_fn(on_path).missing("igvm-cfg")
        if why is None:
            return Discovered(os.path.abspath(on_path), "PATH"), notes
        notes.append(why)
    else:
        notes.append(f"no {PATH_NAME} on PATH")
    return None, notes


def discover(explicit: str | None = None, env: Mapping[str, str] | None = None,
             cache: Path | None = None) -> Discovered:
    """Like :func:`find` but a missing QEMU is a one-line HarnessError."""
    found, notes = find(explicit, env, cache)
    if found is None:
        raise HarnessError("no QEMU with IGVM found (" + "; ".join(notes)
                           + "): run `igvm-harness qemu build`, or pass --qemu / set $QEMU")
    return found
