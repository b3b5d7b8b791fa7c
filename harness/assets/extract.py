"""Take named files out of a .deb, with a size bound, without unpacking the rest.

``dpkg-deb --fsys-tarfile`` (dpkg's own reader of the .deb format) streams
the data tarball; we keep only the wanted regular files.  Unpacking the whole
package with ``dpkg-deb -x`` would write ~400 MB of modules for one kernel.
A member's size comes from the (untrusted) tar header, so it is checked
against the bound before a byte is written, and the copy stops at the bound.
"""

from __future__ import annotations

import fnmatch
import hashlib
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from harness.errors import HarnessError


@dataclass(frozen=True)
class Extracted:
    member: str      # path inside the package (``usr/share/ovmf/OVMF.fd``)
    path: Path       # where it was written
    sha256: str
    size: int


def _clean(name: str) -> str | None:
    p = PurePosixPath(name.lstrip("./") if name.startswith("./") else name)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        return None
    return str(p)


def extract(deb: Path, wanted: dict[str, int], dest: Path) -> dict[str, Extracted]:
    """Write the members matching each pattern of *wanted* (pattern -> max size)
    under *dest*; return pattern -> Extracted.  Every pattern must match exactly
    one regular file."""
    found: dict[str, Extracted] = {}
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
                for m in tf:
                    name = _clean(m.name)
                    if name is None:
                        continue
                    for pattern, bound in wanted.items():
                        if not fnmatch.fnmatchcase(name, pattern):
                            continue
                        if not m.isreg():
                            raise HarnessError(f"{deb.name}: {name} is not a regular file")
                        if pattern in found:
                            raise HarnessError(f"{deb.name}: more than one file matches "
                                               f"{pattern} ({found[pattern].member}, {name})")
                        if m.size > bound:
                            raise HarnessError(f"{deb.name}: {name} is {m.size} bytes, over "
                                               f"the {bound} byte bound")
                        found[pattern] = _copy(tf, m, name, dest, bound)
        except tarfile.TarError as exc:
            raise HarnessError(f"{deb.name}: unreadable package data ({exc})") from None
    finally:
        if proc.stdout:
            proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        rc = proc.wait()
    if rc != 0:
        raise HarnessError(f"dpkg-deb --fsys-tarfile {deb.name} failed: {err.strip()[:200]}")
    missing = [p for p in wanted if p not in found]
    if missing:
        raise HarnessError(f"{deb.name} has no {', '.join(missing)}")
    return found


def _copy(tf: tarfile.TarFile, m: tarfile.TarInfo, name: str, dest: Path,
          bound: int) -> Extracted:
    src = tf.extractfile(m)
    if src is None:
        raise HarnessError(f"cannot read {name}")
    out = dest / name
    out.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    n = 0
    with open(out, "wb") as f:
        while chunk := src.read(1 << 20):
            n += len(chunk)
            if n > bound:
                raise HarnessError(f"{name} exceeds the {bound} byte bound")
            h.update(chunk)
            f.write(chunk)
    return Extracted(name, out, h.hexdigest(), n)
