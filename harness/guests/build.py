"""Assemble and link the guest payloads of ``fixtures/guests/`` with
binutils (``as``, ``ld``, ``objcopy``, ``nm``).

Nothing prebuilt is kept in git: a payload is built on first use and cached
under a key that hashes its sources, the tool versions and the recipe, so a
change to any of them rebuilds it.  Builds happen in a private temporary
directory and are published with an atomic rename, so parallel pytest-xdist
workers never see (or clobber) a half-written payload.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from harness.errors import HarnessError

#: Bumped when the build recipe itself changes meaning.
RECIPE_VERSION = 2

SOURCE_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "guests"


class GuestBuildError(HarnessError):
    """binutils missing, or a payload failed to assemble or link."""


@dataclass(frozen=True)
class GuestSpec:
    """How one payload is built: its sources (first one holds the entry
    symbol), the object format and the address it is linked at."""

    name: str
    sources: tuple[str, ...]
    bits: int            # 16 (as --32, .code16) or 64
    link_address: int    # address of the first byte of the image
    entry: str           # entry symbol
    doc: str


#: Every payload, as data: name, sources (relative to fixtures/guests/; the
#: first holds the entry symbol), bits, link address, entry symbol, purpose.
#: The reset-vector pages are linked at 0xF000 (CS base 0xFFFF0000 at reset,
#: Intel SDM vol. 3, 9.1.4), the long-mode payloads at 1 MiB.
GUEST_TABLE: tuple[tuple, ...] = (
    ("reset16", ("reset16.s",), 16, 0xF000, "start",
     "real-mode guest for the reset-vector page at 0xFFFFF000 (linked as CS offsets)"),
    ("payload64", ("payload64.s", "io_ghcb.s"), 64, 0x100000, "_start",
     "long-mode payload entered through a native VP context"),
    ("payload64-ghcb", ("payload64.s", "ghcb/io_ghcb_page.s"), 64, 0x100000, "_start",
     "payload64 with console and exit through a shared GHCB page (SEV-ES/SEV-SNP)"),
    ("reset-long", ("ghcb/reset_long.s",), 64, 0xF000, "start",
     "reset-vector page that enters payload64 in long mode (no VP context), for every platform"),
)

GUESTS: dict[str, GuestSpec] = {row[0]: GuestSpec(*row) for row in GUEST_TABLE}


@dataclass(frozen=True)
class GuestImage:
    """A built payload: flat binary plus its symbol table."""

    name: str
    path: Path
    load_address: int
    entry: int
    symbols: dict

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def cache_root() -> Path:
    env = os.environ.get("IGVM_HARNESS_GUEST_CACHE")
    if env:
        return Path(env)
    from harness import cache

    return cache.path(cache.GUESTS)


def publish(final: Path, data: bytes, prefix: str, error: type[HarnessError] = HarnessError,
            what: str = "a guest artefact") -> Path:
    """Write ``data`` as the cache file ``final`` (whole or not at all), or
    raise ``error`` naming ``what``: how the initrd and the boot disk enter
    the guest cache."""
    from harness.outputs import write_atomic
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(final, data, prefix=prefix)
    except OSError as exc:
        raise error(f"cannot write {what} into {final.parent}: {exc.strerror}") from None
    return final


def _tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise GuestBuildError(f"binutils tool '{name}' not found on PATH "
                              "(install the Debian package binutils)")
    return path


@lru_cache(maxsize=None)
def _tool_version(tool: str) -> str:
    out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout.splitlines() or [""])[0]


def _run(argv: list[str], what: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise GuestBuildError(f"{what} failed: {detail}")
    return proc.stdout


def _linker_script(spec: GuestSpec) -> str:
    # One output section so that objcopy -O binary gives a contiguous image
    # starting exactly at link_address.
    return ("SECTIONS {\n"
            f"  . = 0x{spec.link_address:x};\n"
            "  .image : { *(.text*) *(.rodata*) *(.data*) *(.bss*) *(COMMON) }\n"
            "  _image_end = .;\n"
            "  /DISCARD/ : { *(.note*) *(.eh_frame*) *(.comment*) }\n"
            "}\n")


def cache_key(spec: GuestSpec, source_dir: Path = SOURCE_DIR) -> str:
    h = hashlib.sha256()
    h.update(f"recipe={RECIPE_VERSION}\n".encode())
    h.update(repr(spec).encode())
    for tool in ("as", "ld", "objcopy"):
        h.update(_tool_version(_tool(tool)).encode())
    for path in sorted(source_dir.glob("*.inc")) + [source_dir / s for s in spec.sources]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:20]


def build_guest(name: str, cache: Path | None = None,
                source_dir: Path = SOURCE_DIR) -> GuestImage:
    """Build (or reuse) payload ``name``; returns the cached image."""
    try:
        spec = GUESTS[name]
    except KeyError:
        raise GuestBuildError(f"unknown guest '{name}' (known: {', '.join(GUESTS)})") from None
    for src in spec.sources:
        if not (source_dir / src).is_file():
            raise GuestBuildError(f"guest source {source_dir / src} is missing")
    cache = cache or cache_root()
    final = cache / f"{name}-{cache_key(spec, source_dir)}"
    meta = final / "image.json"
    if not meta.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache))
        try:
            _assemble(spec, source_dir, work)
            try:
                os.rename(work, final)
            except OSError:
                # Another worker published the same key first: theirs wins.
                if not meta.is_file():
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    info = json.loads(meta.read_text())
    return GuestImage(name=name, path=final / "image.bin", load_address=info["load_address"],
                      entry=info["entry"], symbols=info["symbols"])


def _assemble(spec: GuestSpec, source_dir: Path, work: Path) -> None:
    as_, ld, objcopy, nm = (_tool(t) for t in ("as", "ld", "objcopy", "nm"))
    as_flags = ["--32"] if spec.bits == 16 else ["--64"]
    emul = "elf_i386" if spec.bits == 16 else "elf_x86_64"
    objs = []
    for src in spec.sources:
        obj = work / (Path(src).stem + ".o")
        _run([as_, *as_flags, "-I", str(source_dir), "-o", str(obj), str(source_dir / src)],
             f"assembling {src}")
        objs.append(str(obj))
    script = work / "image.ld"
    script.write_text(_linker_script(spec))
    elf = work / "image.elf"
    _run([ld, "-m", emul, "-nostdlib", "-static", "-T", str(script), "-e", spec.entry,
          "-o", str(elf), *objs], f"linking guest {spec.name}")
    _run([objcopy, "-O", "binary", str(elf), str(work / "image.bin")],
         f"objcopy of guest {spec.name}")
    symbols = {}
    for line in _run([nm, str(elf)], f"nm of guest {spec.name}").splitlines():
        parts = line.split()
        if len(parts) == 3:
            symbols[parts[2]] = int(parts[0], 16)
    if spec.entry not in symbols:
        raise GuestBuildError(f"guest {spec.name}: entry symbol {spec.entry} missing")
    info = {"name": spec.name, "load_address": spec.link_address,
            "entry": symbols[spec.entry], "symbols": symbols}
    (work / "image.json").write_text(json.dumps(info, indent=1, sort_keys=True))


def build_all(cache: Path | None = None) -> dict[str, GuestImage]:
    return {name: build_guest(name, cache) for name in GUESTS}
