"""The reference-crate oracle: build it (cached), ask it about files (batch).

``tools/igvm-oracle`` is built once per input identity (its sources, its
Cargo.lock, the rustc version) into ``<cache>/oracle/<key>/igvm-oracle``
with a record ``oracle.json`` (crate version and registry checksum from the
lock).  :func:`status` says why it is absent: no cargo, crates.io
unreachable, not built yet; tests skip with that sentence.

One oracle process answers for a whole list of files (file names on its
stdin, one JSON line per file on its stdout), so a corpus of thousands of
inputs costs one process start.  The ``corim`` subcommand takes requests
the same way (one a line, arguments tab-separated): the crate's Launch
Measurement CoRIM for a file (:func:`corim_build`), the verdict of its CoRIM
library on a document and a signature envelope (:func:`corim_check`), its
serializer (:func:`corim_embed`) and the CoRIM headers its parser reads
(:func:`corim_read`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterable

from harness import cache, cargo, tree
from harness.errors import HarnessError
from harness.locks import exclusive

BINARY = "igvm-oracle"
RECORD = "oracle.json"
#: Platforms the oracle answers for (its FILTERS), in the harness's names.
PLATFORMS = ("native", "sev", "sev-es", "sev-snp")
#: Seconds for one batch; a file costs well under a millisecond to parse.
BATCH_TIMEOUT = 900.0
#: What the built oracle answers (tools/igvm-oracle/src/main.rs).
SUBCOMMANDS = ("parse", "snp-digest", "corim")
#: The profile's platforms the ``corim`` subcommand takes, in the harness's names.
CORIM_PLATFORMS = ("sev-snp", "tdx", "vsm")


def _crate() -> Path:
    return tree.part("tools/igvm-oracle")


def key() -> str:
    """The build's identity: sources, lock and compiler (raises cargo.Unavailable)."""
    crate = _crate()
    cargo.require_cargo()
    return cargo.crate_digest(crate, (cargo.rustc_version(),))[:16]


def entry(k: str | None = None) -> Path:
    return cache.path(cache.ORACLE, k or key())


def path() -> Path | None:
    """The built oracle for the current sources, or None."""
    try:
        p = entry() / BINARY
    except (cargo.Unavailable, HarnessError):
        return None
    return p if os.access(p, os.X_OK) else None


def record() -> dict | None:
    p = path()
    if p is None:
        return None
    try:
        return json.loads((p.parent / RECORD).read_text())
    except (OSError, ValueError):
        return None


def status() -> tuple[Path | None, str]:
    """(binary, one line): the line names the missing capability when absent."""
    try:
        k = key()
    except cargo.Unavailable as exc:
        return None, f"no reference oracle: {exc}"
    except HarnessError as exc:
        return None, f"no reference oracle: {exc}"
    p = entry(k) / BINARY
    if os.access(p, os.X_OK):
        rec = record() or {}
        return p, (f"reference oracle: igvm {rec.get('igvm', '?')} from crates.io "
                   f"(checksum {str(rec.get('checksum', '?'))[:16]}...), {p}")
    reason = _unavailable_note(k)
    if reason:
        return None, f"no reference oracle: {reason}"
    return None, (f"reference oracle not built (run `igvm-harness oracle build`; "
                  f"./setup.sh does): {p} is missing")


def _unavailable_note(k: str) -> str | None:
    """The reason recorded by the last failed build for this identity (crates.io unreachable)."""
    try:
        return (cache.path(cache.ORACLE, f".unavailable-{k}")).read_text().strip() or None
    except OSError:
        return None


def build(progress=None, force: bool = False) -> Path:
    """Build the oracle into the cache (no-op when present); raises cargo.Unavailable."""
    crate = _crate()
    k = key()
    final = entry(k)
    if not force and os.access(final / BINARY, os.X_OK):
        return final / BINARY
    phase = (progress.phase if progress else (lambda s: print(f"igvm-harness: {s}",
                                                            file=sys.stderr, flush=True)))
    step = getattr(progress, "step", None)
    done = getattr(progress, "done", None)
    root = cache.path(cache.ORACLE)
    root.mkdir(parents=True, exist_ok=True)
    note = root / f".unavailable-{k}"
    log_path = root / f"build-{k}.log"
    with exclusive(root / f".{k}.lock"), open(log_path, "w") as log:
        if not force and os.access(final / BINARY, os.X_OK):
            return final / BINARY
        try:
            cargo.fetch(crate, log, phase)
        except cargo.Unavailable as exc:
            note.write_text(str(exc) + "\n")
            raise
        note.unlink(missing_ok=True)
        cargo.build(crate, ["build", "--release", "--bin", BINARY], log, phase, step, done)
        built = cargo.target_dir() / "release" / BINARY
        if not os.access(built, os.X_OK):
            raise HarnessError(f"cargo built no {built}; see {log_path}")
        pkgs = cargo.lock_packages(crate / "Cargo.lock")
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{k}-", dir=root))
        try:
            shutil.copy2(built, tmp / BINARY)
            (tmp / RECORD).write_text(json.dumps({
                "igvm": pkgs.get("igvm", {}).get("version"),
                "checksum": pkgs.get("igvm", {}).get("checksum"),
                "igvm_defs": pkgs.get("igvm_defs", {}).get("version"),
                "features": ["igvm-c", "corim"], "subcommands": list(SUBCOMMANDS),
                "rustc": cargo.rustc_version(),
                "lock": "tools/igvm-oracle/Cargo.lock"}, indent=1) + "\n")
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    phase(f"reference oracle built: {final / BINARY}")
    return final / BINARY


def require() -> Path:
    p, line = status()
    if p is None:
        raise HarnessError(line)
    return p


def _run(argv: list[str], lines: list[str], expected: int, what: str) -> list[dict]:
    """One oracle process: ``lines`` on its stdin, ``expected`` JSON answers on its stdout."""
    binary = require()
    name = " ".join(["igvm-oracle", *argv[:-1]])
    try:
        res = subprocess.run([str(binary), *argv], input="".join(x + "\n" for x in lines),
                             capture_output=True, text=True, timeout=BATCH_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"{name} timed out on {len(lines)} {what}") from None
    if res.returncode != 0:
        raise HarnessError(f"{name} failed: "
                           f"{(res.stderr.strip().splitlines() or ['no output'])[-1]}")
    out = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    if len(out) != expected:
        raise HarnessError(f"{name} answered {len(out)} of {expected} {what}")
    return out


def _ask(command: str, files: Iterable[str | os.PathLike]) -> list[dict]:
    names = [os.fspath(f) for f in files]
    if any("\n" in n for n in names):
        raise HarnessError("a file name with a newline cannot be passed to the oracle")
    if not names:
        return []
    return _run([command, "-"], names, len(names), "files")


def _corim(action: str, rows: list[list[str]], per_row: list[int]) -> list[list[dict]]:
    """One ``igvm-oracle corim ACTION -`` process for all ``rows`` (a request a line,
    arguments tab-separated); its answers, grouped per row."""
    if not rows:
        return []
    if any("\t" in a or "\n" in a for row in rows for a in row):
        raise HarnessError("an argument with a tab or a newline cannot be passed to the oracle")
    out = _run(["corim", action, "-"], ["\t".join(r) for r in rows], sum(per_row), "answers")
    grouped, at = [], 0
    for n in per_row:
        grouped.append(out[at:at + n])
        at += n
    return grouped


def corim_build(requests: Iterable[tuple[str | os.PathLike, str, Iterable[int]]]) -> list[list[dict]]:
    """The crate's own CoRIM for each (file, platform, SVNs): per request, one dict per SVN
    (``digest``: the crate's measurement of the file; ``corim``: the document, hex)."""
    rows = [[os.fspath(f), p, *map(str, svns)] for f, p, svns in requests]
    return _corim("build", rows, [len(r) - 2 for r in rows])


def corim_check(document: str | os.PathLike, signature: str | os.PathLike | None = None,
                evidence: tuple[str, bytes] | None = None) -> dict:
    """The verdict of the crate's CoRIM library on a document (and a COSE_Sign1 envelope
    for it), and with ``evidence`` = (platform, digest) its appraisal of that digest."""
    row = [os.fspath(document)]
    if signature is not None:
        row += ["--signature", os.fspath(signature)]
    if evidence is not None:
        row += ["--evidence", f"{evidence[0]}:{bytes(evidence[1]).hex()}"]
    return _corim("check", [row], [1])[0][0]


def corim_check_bytes(document: bytes, signature: bytes | None = None,
                      evidence: tuple[str, bytes] | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="igvmh-oracle-") as d:
        doc = Path(d) / "document.cbor"
        doc.write_bytes(document)
        sig = None
        if signature is not None:
            sig = Path(d) / "signature.cose"
            sig.write_bytes(signature)
        return corim_check(doc, sig, evidence)


def corim_embed(source: str | os.PathLike, out: str | os.PathLike, platform: str, svn: int,
                signature: str | os.PathLike | None = None) -> dict:
    """The crate's serializer: ``source`` with the crate's CoRIM (and ``signature``'s
    bytes as its 0x105) written to ``out``."""
    row = [os.fspath(source), os.fspath(out), platform, str(svn)]
    if signature is not None:
        row += ["--signature", os.fspath(signature)]
    return _corim("embed", [row], [1])[0][0]


def corim_read(files: Iterable[str | os.PathLike]) -> list[dict]:
    """The crate parser's verdict (no isolation filter) and the CoRIM headers it read."""
    rows = [[os.fspath(f)] for f in files]
    return [a[0] for a in _corim("read", rows, [1] * len(rows))]


def parse(files: Iterable[str | os.PathLike]) -> list[dict]:
    """The crate parser's verdicts, one dict per file (see tools/igvm-oracle/src/main.rs)."""
    return _ask("parse", files)


def snp_digest(files: Iterable[str | os.PathLike]) -> list[dict]:
    """The crate's SEV-SNP launch digest per file (``digest`` hex, or ``error``)."""
    return _ask("snp-digest", files)


def parse_bytes(blobs: dict[str, bytes]) -> dict[str, dict]:
    """:func:`parse` for in-memory files (written to a private temporary directory)."""
    return _with_files(blobs, parse)


def snp_digest_bytes(blobs: dict[str, bytes]) -> dict[str, dict]:
    return _with_files(blobs, snp_digest)


def _with_files(blobs: dict[str, bytes], ask) -> dict[str, dict]:
    with tempfile.TemporaryDirectory(prefix="igvmh-oracle-") as d:
        paths = {}
        for i, (name, data) in enumerate(blobs.items()):
            p = Path(d) / f"{i:06d}.igvm"
            p.write_bytes(data)
            paths[name] = p
        answers = ask(paths.values())
    return dict(zip(paths, answers))


__all__ = ["CORIM_PLATFORMS", "PLATFORMS", "SUBCOMMANDS", "build", "corim_build", "corim_check",
           "corim_check_bytes", "corim_embed", "corim_read", "parse", "parse_bytes", "path",
           "record", "require", "snp_digest", "snp_digest_bytes", "status"]
