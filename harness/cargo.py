"""Building the repository's Rust crates (``tools/*``) with cargo, into the harness cache.

Two crates of the project's own depend on the ``igvm`` crate from crates.io:
``tools/igvm-c`` (its C API as the static library QEMU links,
:mod:`harness.qemu.libigvm`) and ``tools/igvm-oracle`` (the reference parser
and SNP measurement as a command, :mod:`harness.reference.oracle`).  Each
has a committed ``Cargo.lock``: every build runs ``--locked``, so the
versions and the registry checksums are the lock's, and cargo refuses a
download whose checksum differs.

Two steps, so that "no registry" is told apart from "does not build":
``fetch`` (``cargo fetch --locked``; the only step that needs the network,
a no-op once ``~/.cargo/registry`` has the crates) raises
:class:`Unavailable` naming the missing capability; ``build`` then runs
``--offline``.  Both crates share one target directory under the cache
(``<cache>/cargo/target``), so their common dependencies compile once.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Callable, Iterable, TextIO

from harness import cache, logged
from harness.errors import HarnessError
from harness.locks import exclusive

#: Cargo's progress line for a compiled package ("   Compiling igvm v0.5.0").
COMPILING = re.compile(r"^\s*Compiling (\S+) v(\S+)")
#: What a cargo older than the lock's format says (cargo 1.65, Debian 12's, on a
#: version 4 lock: "lock file version `4` was found, but this version of Cargo
#: does not understand this lock file, perhaps Cargo needs to be updated?").
LOCK_TOO_NEW = re.compile(r"lock file version `?(\w+)`? was found, but this version of Cargo "
                          r"does not understand")


class Unavailable(HarnessError):
    """cargo, rustc or the crates.io registry is missing: a capability, not a bug.

    Exit status 3 at the CLI, so that set-up can tell it from a failed build."""

    exit_code = 3


def cargo_binary() -> str | None:
    """cargo on PATH, else rustup's default place (~/.cargo/bin)."""
    found = shutil.which("cargo")
    if found:
        return found
    home = os.environ.get("CARGO_HOME") or os.path.join(os.path.expanduser("~"), ".cargo")
    cand = os.path.join(home, "bin", "cargo")
    return cand if os.access(cand, os.X_OK) else None


def require_cargo() -> str:
    cargo = cargo_binary()
    if cargo is None:
        raise Unavailable("no cargo (a Rust toolchain: rustup's; Debian 12's cargo is too old "
                          "for the committed locks)")
    return cargo


def target_dir() -> Path:
    return cache.path(cache.CARGO_TARGET)


def env(offline: bool) -> dict[str, str]:
    """cargo's environment: the shared target directory; the network only when fetching."""
    e = dict(os.environ)
    e["CARGO_TARGET_DIR"] = str(target_dir())
    e["CARGO_TERM_COLOR"] = "never"
    e["CARGO_TERM_PROGRESS_WHEN"] = "never"
    cargo = cargo_binary()
    if cargo:  # rustc beside cargo (rustup's ~/.cargo/bin may not be on PATH)
        e["PATH"] = os.pathsep.join([os.path.dirname(cargo), e.get("PATH", "")])
    if offline:
        e["CARGO_NET_OFFLINE"] = "true"
    return e


def lock_packages(lock: Path) -> dict[str, dict]:
    """Cargo.lock's registry packages: name -> {version, checksum} (one version each here)."""
    try:
        data = tomllib.loads(lock.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise HarnessError(f"cannot read {lock}: {exc}") from None
    out = {}
    for pkg in data.get("package", []):
        if str(pkg.get("source", "")).startswith("registry+"):
            out[pkg["name"]] = {"version": pkg["version"], "checksum": pkg.get("checksum", "")}
    return out


def rustc_version() -> str:
    """``rustc -V`` (part of every build's identity: another compiler, another build)."""
    cargo = require_cargo()
    rustc = os.path.join(os.path.dirname(cargo), "rustc")
    try:
        res = subprocess.run([rustc if os.access(rustc, os.X_OK) else "rustc", "-V"],
                             capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"no rustc: {exc}") from None
    if res.returncode != 0:
        raise Unavailable(f"rustc -V failed: {(res.stderr.strip().splitlines() or ['?'])[-1]}")
    return res.stdout.strip()


def crate_digest(crate: Path, extra: Iterable[str] = ()) -> str:
    """SHA-256 over a crate's inputs (manifest, lock, sources, configuration) and ``extra``."""
    h = hashlib.sha256()
    for p in sorted(crate.rglob("*")):
        rel = p.relative_to(crate)
        if p.is_file() and rel.parts[0] not in ("target",) and not rel.name.startswith("."):
            h.update(str(rel).encode() + b"\0" + p.read_bytes() + b"\0")
    for e in extra:
        h.update(e.encode() + b"\0")
    return h.hexdigest()


run = logged.run  # (kept under this name for the callers of this module)


def _first_error(lines: list[str]) -> str:
    for pat in (r"^error(\[\w+\])?: .*", r".*(failed|error|Couldn't|Unable).*"):
        rx = re.compile(pat)
        for line in lines:
            if rx.match(line.strip()):
                return line.strip()[:240]
    return (lines[-1].strip() if lines else "no output")[:240]


def _version(cargo: str) -> str:
    """``cargo --version`` in a word or two ("cargo 1.65.0"), for messages."""
    try:
        res = subprocess.run([cargo, "--version"], capture_output=True, text=True, check=False,
                             timeout=60, env=env(offline=True))
    except (OSError, subprocess.TimeoutExpired):
        return "cargo"
    return " ".join(res.stdout.split()[:2]) or "cargo"


def fetch(crate: Path, log: TextIO, phase: Callable[[str], None]) -> None:
    """``cargo fetch --locked``: the crates of the lock into cargo's registry cache.

    Raises :class:`Unavailable` when cargo or the registry is missing (an
    air-gapped lab) or cargo is older than the lock's format, HarnessError
    when the lock does not fit the manifest.
    """
    cargo = require_cargo()
    lock = crate / "Cargo.lock"
    pkgs = lock_packages(lock)
    phase(f"fetching {len(pkgs)} crates of {crate.name}/Cargo.lock (igvm "
          f"{pkgs.get('igvm', {}).get('version', '?')}) from crates.io, checksums from the lock")
    with exclusive(target_dir().parent / ".lock"):
        rc, lines = run([cargo, "fetch", "--locked", "--manifest-path", str(crate / "Cargo.toml")],
                        log, env=env(offline=False))
    if rc != 0:
        why = _first_error(lines)
        too_new = next((m for m in map(LOCK_TOO_NEW.search, lines) if m), None)
        if too_new:  # a capability (a newer toolchain), not an unreachable registry
            raise Unavailable(f"{_version(cargo)} is too old for {crate.name}/Cargo.lock (lock "
                              f"file version {too_new.group(1)}; a newer Rust toolchain: rustup's)")
        if "needs to be updated" in why:  # cargo: "the lock file ... needs to be updated but --locked"
            raise HarnessError(f"{crate}/Cargo.lock does not fit Cargo.toml: {why}")
        raise Unavailable(f"crates.io unreachable for {crate.name} (cargo fetch: {why})")


def build(crate: Path, args: list[str], log: TextIO, phase: Callable[[str], None],
          step: Callable[[int, int, str], None] | None = None,
          done: Callable[[], None] | None = None) -> list[str]:
    """``cargo <args> --locked --offline`` on a fetched crate, with [n/total] progress
    (``Compiling`` lines counted against the lock's packages); its output lines."""
    cargo = require_cargo()
    total = len(lock_packages(crate / "Cargo.lock")) + 1
    seen = 0

    def on_line(line: str) -> None:
        nonlocal seen
        m = COMPILING.match(line)
        if m and step:
            seen += 1
            step(min(seen, total), total, f"{m.group(1)} {m.group(2)}")

    phase(f"compiling {crate.name} with cargo (release; target dir {target_dir()})")
    with exclusive(target_dir().parent / ".lock"):
        cut = args.index("--") if "--" in args else len(args)  # rustc's own flags stay last
        cmd = [cargo, *args[:cut], "--locked", "--offline", "--manifest-path",
               str(crate / "Cargo.toml"), *args[cut:]]
        try:
            rc, lines = run(cmd, log, env=env(offline=True), on_line=on_line)
        finally:
            if done:
                done()
    if rc != 0:
        raise HarnessError(f"cargo {args[0]} of {crate.name} failed: {_first_error(lines)}; "
                           f"see {getattr(log, 'name', 'the log')}")
    return lines


__all__ = ["Unavailable", "build", "cargo_binary", "crate_digest", "env", "fetch",
           "lock_packages", "require_cargo", "run", "rustc_version", "target_dir"]
