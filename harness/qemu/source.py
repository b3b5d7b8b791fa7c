"""Obtain a QEMU source tree for the QEMU-under-test.

Three kinds of source:

* ``debian[:VERSION]``: Debian's ``qemu`` source package through apt.  The
  ``deb-src`` entry is derived from the Debian archive the machine already
  uses (never a hard-coded mirror) into the harness's private apt
  configuration (harness/debian/apt.py; /etc/apt is never written), and
  candidate versions with IGVM support (upstream >= 10.1; 10.0 has no
  ``backends/igvm.c``) are tried newest first, falling back when a download
  fails (mirrors can list versions they do not serve).  The downloaded files
  are checked against the ``.dsc``'s ``Checksums-Sha256``.
* a tarball (``.tar.xz``/``.tar.gz``/``.tar.bz2``): identified by its SHA-256.
* a directory: a QEMU developer's tree, built out of tree and never modified.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from harness.debian.apt import SRC_SUITES, AptConfig, harness_config
from harness.debian.sources import (DEFAULT_KEYRING, AptEntry, debian_archive,  # noqa: F401 (re-exported)
                                    parse_deb822, parse_one_line_file, read_apt_sources)
from harness.debian.version import compare_versions, sort_newest_first, split_version
from harness import cache
from harness.errors import HarnessError
from harness.inputs import sha256_file

SOURCE_PACKAGE = "qemu"
MIN_IGVM_UPSTREAM = (10, 1)  # backends/igvm.c first released in QEMU 10.1
# Suites whose deb-src entries the private apt configuration has
# (harness/debian/apt.py SRC_SUITES): unstable carries the newest QEMU.

# Patches from the source package's debian/patches that the +ds tarball
# needs to configure at all (read from each patch's description):
#  - skip-unpack-edk2-blobs: the +ds tarball has no pc-bios/edk2-*.fd.bz2, and
#    x86_64-softmmu is an edk2 target, so meson would try to unpack them.
#  - skip-install-dtb: pc-bios/dtb/*.dtb are stripped; without dtc meson
#    installs them and fails.
# Everything else in debian/patches is a Debian behaviour change or a fix
# for targets we do not build; we leave QEMU as upstream ships it.
# (disable-pycotap is not needed: we install pycotap with meson.)
NEEDED_PATCHES: tuple[str, ...] = (
    "skip-unpack-edk2-blobs.patch",
    "skip-install-dtb.patch",
)


def upstream_tuple(version: str) -> tuple[int, ...]:
    """``1:10.2.2+ds-1`` -> ``(10, 2, 2)``."""
    _, upstream, _ = split_version(version)
    m = re.match(r"(\d+(?:\.\d+)*)", upstream)
    return tuple(int(x) for x in m.group(1).split(".")) if m else ()


def has_igvm(version: str) -> bool:
    return upstream_tuple(version)[:2] >= MIN_IGVM_UPSTREAM


# --------------------------------------------------------------------------
# apt: the harness's private configuration (harness/debian/apt.py), shared
# with the firmware fetch; /etc/apt is only read.

def apt_config() -> AptConfig:
    """The private apt configuration under the harness cache."""
    return harness_config(cache.path(cache.APT))


def derive_deb_src(entries: Iterable[AptEntry], suites: tuple[str, ...] = SRC_SUITES) -> str:
    """The deb822 text of the ``deb-src`` entry, from the machine's Debian archive.

    Raises HarnessError when no enabled ``deb`` entry of the Debian archive
    exists (then there is nothing to derive a source entry from).
    """
    try:
        archive = debian_archive(entries)
    except HarnessError as exc:
        raise HarnessError(f"no deb-src entry possible: {exc}") from None
    return (f"# deb-src entry derived from {archive.origin}\n"
            "Types: deb-src\n"
            f"URIs: {archive.uri}\n"
            f"Suites: {' '.join(suites)}\n"
            "Components: main\n"
            f"Signed-By: {archive.signed_by}\n")


def available_versions(package: str = SOURCE_PACKAGE, cfg: AptConfig | None = None) -> list[str]:
    """Source versions apt knows, newest first (``apt-cache showsrc``)."""
    return (cfg or apt_config()).source_versions(package)


# --------------------------------------------------------------------------
# download + verification

class DownloadError(Exception):
    """A candidate version could not be downloaded (try the next one)."""


Downloader = Callable[[str, Path], None]


def apt_source_download(version: str, dest: Path, log=None, cfg: AptConfig | None = None) -> None:
    """Default downloader: ``apt-get source --download-only qemu=VERSION`` through
    the private apt configuration."""
    res = (cfg or apt_config()).source_download(SOURCE_PACKAGE, version, dest, log=log)
    if res.returncode != 0:
        errs = [l for l in res.stdout.splitlines() if l.startswith(("E:", "Err:"))]
        why = errs[0] if errs else f"exit status {res.returncode}"
        raise DownloadError(f"apt-get source {SOURCE_PACKAGE}={version} failed: {why[:160]}")


def dsc_name(version: str, package: str = SOURCE_PACKAGE) -> str:
    return f"{package}_{version.split(':', 1)[-1]}.dsc"


def dsc_checksums(text: str) -> dict[str, tuple[str, int]]:
    """``{filename: (sha256, size)}`` from a .dsc's Checksums-Sha256 field."""
    out: dict[str, tuple[str, int]] = {}
    in_field = False
    for line in text.splitlines():
        if line.startswith("Checksums-Sha256:"):
            in_field = True
            continue
        if in_field:
            if line[:1] != " ":
                break
            parts = line.split()
            if len(parts) == 3:
                out[parts[2]] = (parts[0].lower(), int(parts[1]))
    return out




def verify_dsc(dsc: Path) -> dict[str, str]:
    """Check every file the .dsc lists; return ``{name: sha256}``.

    Raises HarnessError on a missing file, size or hash mismatch, or a .dsc
    without a Checksums-Sha256 field.
    """
    sums = dsc_checksums(dsc.read_text(errors="replace"))
    if not sums:
        raise HarnessError(f"{dsc}: no Checksums-Sha256 field")
    for name, (want, size) in sums.items():
        p = dsc.parent / name
        if not p.is_file():
            raise HarnessError(f"{dsc}: listed file {name} was not downloaded")
        if p.stat().st_size != size:
            raise HarnessError(f"checksum mismatch: {p} has size {p.stat().st_size}, "
                               f".dsc says {size}")
        got = sha256_file(p)
        if got != want:
            raise HarnessError(f"checksum mismatch: {p} sha256 {got}, .dsc says {want}")
    return {name: want for name, (want, _) in sums.items()}


@dataclass
class Fetched:
    version: str
    dsc: Path
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256
    tried: list[tuple[str, str]] = field(default_factory=list)  # (version, error)


def fetch_newest(candidates: list[str], download_root: Path, downloader: Downloader,
                 progress: Callable[[str], None] = lambda s: None) -> Fetched:
    """Download and verify the newest candidate that works.

    Files already downloaded and verified (a previous run) are reused.
    A download failure moves on to the next candidate; a checksum mismatch
    stops: it means tampering or corruption, not an unavailable version.
    """
    tried: list[tuple[str, str]] = []
    usable = [v for v in sort_newest_first(candidates) if has_igvm(v)]
    if not usable:
        listed = ", ".join(candidates) or "none"
        raise HarnessError(f"no qemu source version with IGVM (>= 10.1) available "
                           f"(apt lists: {listed})")
    for v in usable:
        dest = download_root / v.replace(":", "_")
        dsc = dest / dsc_name(v)
        if dsc.is_file():
            try:
                return Fetched(v, dsc, verify_dsc(dsc), tried)
            except HarnessError:
                pass  # a partial earlier download: fetch again
        tmp = dest.with_name(dest.name + ".part")
        _rmtree(tmp)
        tmp.mkdir(parents=True)
        progress(f"downloading qemu source {v}")
        try:
            downloader(v, tmp)
        except DownloadError as exc:
            tried.append((v, str(exc)))
            progress(f"qemu source {v} not downloadable, trying the next version")
            _rmtree(tmp)
            continue
        tmp_dsc = tmp / dsc_name(v)
        if not tmp_dsc.is_file():
            tried.append((v, "no .dsc downloaded"))
            _rmtree(tmp)
            continue
        try:
            files = verify_dsc(tmp_dsc)
        except HarnessError:
            _rmtree(tmp)
            raise
        _rmtree(dest)
        os.replace(tmp, dest)
        return Fetched(v, dest / dsc_name(v), files, tried)
    detail = "; ".join(f"{v}: {e}" for v, e in tried)
    raise HarnessError(f"no qemu source version could be downloaded ({detail})")


def _rmtree(p: Path) -> None:
    import shutil
    shutil.rmtree(p, ignore_errors=True)


# --------------------------------------------------------------------------
# extraction and patches

def _safe_extract(tarball: Path, dest: Path) -> None:
    with tarfile.open(tarball) as tf:
        try:
            tf.extractall(dest, filter="data")
        except TypeError:  # Python without extraction filters
            tf.extractall(dest)


def _single_top(dest: Path) -> Path:
    tops = [p for p in dest.iterdir() if p.is_dir()]
    if len(tops) != 1:
        raise HarnessError(f"unexpected tarball layout in {dest}")
    return tops[0]


def extract_debian(fetched: Fetched, dest: Path, patches: tuple[str, ...] = NEEDED_PATCHES,
                   log=None) -> Path:
    """Unpack orig + debian tarballs into *dest*, apply *patches*; return the tree."""
    names = list(fetched.files)
    orig = [n for n in names if ".orig.tar." in n]
    debian = [n for n in names if ".debian.tar." in n]
    if len(orig) != 1 or len(debian) != 1:
        raise HarnessError(f"{fetched.dsc}: expected one orig and one debian tarball, got {names}")
    dest.mkdir(parents=True, exist_ok=True)
    _safe_extract(fetched.dsc.parent / orig[0], dest)
    tree = _single_top(dest)
    _safe_extract(fetched.dsc.parent / debian[0], tree)
    for name in patches:
        apply_patch(tree, tree / "debian" / "patches" / name, log=log)
    return tree


def apply_patch(tree: Path, patch: Path, log=None) -> None:
    if not patch.is_file():
        raise HarnessError(f"Debian patch {patch.name} not found in {patch.parent}")
    res = subprocess.run(["patch", "-p1", "--forward", "--batch", "-i", str(patch)], cwd=tree,
                         stdin=subprocess.DEVNULL, stdout=log or subprocess.DEVNULL,
                         stderr=subprocess.STDOUT, check=False)
    if res.returncode != 0:
        raise HarnessError(f"Debian patch {patch.name} does not apply to {tree}")


def tree_version(tree: Path) -> str:
    v = tree / "VERSION"
    if not v.is_file():
        raise HarnessError(f"{tree} is not a QEMU source tree (no VERSION file)")
    return v.read_text().strip()


def check_igvm_tree(tree: Path) -> None:
    if not (tree / "backends" / "igvm.c").is_file():
        raise HarnessError(f"QEMU source {tree} (version {tree_version(tree)}) has no IGVM "
                           f"support (no backends/igvm.c; QEMU 10.1 or later needed)")


def tree_identity(tree: Path) -> str:
    """Identity of a developer's tree: git HEAD + diff hash, or a file-stat digest."""
    h = hashlib.sha256()
    try:
        head = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        diff = subprocess.run(["git", "-C", str(tree), "diff", "HEAD"], capture_output=True,
                              check=True).stdout
        h.update(head.encode() + b"\0" + diff)
        return f"git-{head[:12]}-{h.hexdigest()[:12]}"
    except (subprocess.CalledProcessError, FileNotFoundError):
        pass
    for root, dirs, files in os.walk(tree):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "build")
        for name in sorted(files):
            if name.startswith("igvm-harness-") and name.endswith(".mak"):
                continue  # the lean device list the build writes (harness/qemu/devices.py)
            p = os.path.join(root, name)
            try:
                st = os.stat(p)
            except OSError:
                continue
            h.update(f"{os.path.relpath(p, tree)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return f"tree-{h.hexdigest()[:16]}"


# --------------------------------------------------------------------------
# the front door

@dataclass
class SourceSpec:
    """What ``--source`` asked for."""
    kind: str  # "debian" | "tarball" | "tree"
    version: str | None = None
    path: Path | None = None


def parse_source(arg: str | None) -> SourceSpec:
    if not arg or arg == "debian":
        return SourceSpec("debian")
    if arg.startswith("debian:"):
        v = arg.split(":", 1)[1]
        if not v:
            raise HarnessError("--source debian:VERSION needs a version")
        return SourceSpec("debian", version=v)
    p = Path(arg).expanduser()
    if p.is_dir():
        return SourceSpec("tree", path=p.resolve())
    if p.is_file() and re.search(r"\.tar(\.(xz|gz|bz2|zst))?$|\.tgz$", p.name):
        return SourceSpec("tarball", path=p.resolve())
    raise HarnessError(f"unknown --source {arg!r}: expected debian, debian:VERSION, "
                       f"a QEMU source directory or a .tar.* tarball")


@dataclass
class Resolved:
    """A source whose identity is known before any extraction."""
    spec: SourceSpec
    version: str          # QEMU version for the cache key / display
    identity: str         # content identity for the cache key
    fetched: Fetched | None = None


def resolve_debian(spec: SourceSpec, download_root: Path, log=None,
                   downloader: Downloader | None = None,
                   progress: Callable[[str], None] = lambda s: None,
                   cfg: AptConfig | None = None) -> Resolved:
    """Make sure apt can see qemu sources, then download+verify the newest usable one.

    The lists come from the private apt configuration (``<cache>/apt``): an
    ``apt-get update`` runs only when they are missing, the sources changed,
    or they list no version with IGVM.  The chosen version and so the build's
    cache key (``debian-<version>``) do not depend on where the lists live.
    """
    cfg = cfg or apt_config()
    if downloader is None:
        downloader = lambda v, d: apt_source_download(v, d, log=log, cfg=cfg)  # noqa: E731
    changed = cfg.ensure() or not cfg.has_lists()
    versions = [] if changed else cfg.source_versions(SOURCE_PACKAGE)
    if not any(has_igvm(v) for v in versions):
        progress(f"apt-get update (private apt configuration in {cfg.root})")
        cfg.update(log=log)
        for note in cfg.notes:
            progress(note)
        versions = cfg.source_versions(SOURCE_PACKAGE)
    if spec.version:
        match = [v for v in versions if v == spec.version or v.split(":", 1)[-1] == spec.version]
        if not match:
            raise HarnessError(f"qemu source version {spec.version} not available "
                               f"(apt lists: {', '.join(versions) or 'none'})")
        versions = match
        if not has_igvm(versions[0]):
            raise HarnessError(f"qemu {versions[0]} has no IGVM support (QEMU 10.1 or later needed)")
    fetched = fetch_newest(versions, download_root, downloader, progress)
    return Resolved(spec, fetched.version, "debian-" + fetched.version, fetched)


def resolve(spec: SourceSpec, download_root: Path, log=None,
            progress: Callable[[str], None] = lambda s: None) -> Resolved:
    if spec.kind == "debian":
        return resolve_debian(spec, download_root, log=log, progress=progress)
    if spec.kind == "tarball":
        assert spec.path
        digest = sha256_file(spec.path)
        m = re.search(r"(\d+\.\d+\.\d+[^/]*?)(?:\.orig)?\.tar", spec.path.name)
        return Resolved(spec, m.group(1) if m else "unknown", "tarball-" + digest[:16])
    assert spec.path
    check_igvm_tree(spec.path)
    return Resolved(spec, tree_version(spec.path), tree_identity(spec.path))


def materialize(res: Resolved, work: Path, log=None) -> Path:
    """A configured-ready source tree for *res* (extracted under *work* if needed)."""
    if res.spec.kind == "tree":
        assert res.spec.path
        return res.spec.path
    if res.spec.kind == "debian":
        assert res.fetched
        tree = extract_debian(res.fetched, work / "src", log=log)
    else:
        assert res.spec.path
        (work / "src").mkdir(parents=True, exist_ok=True)
        _safe_extract(res.spec.path, work / "src")
        tree = _single_top(work / "src")
        res.version = tree_version(tree)
    check_igvm_tree(tree)
    return tree


__all__ = [
    "SourceSpec", "Resolved", "Fetched", "DownloadError", "parse_source", "resolve", "materialize",
    "derive_deb_src", "parse_deb822", "parse_one_line_file", "read_apt_sources", "fetch_newest",
    "verify_dsc", "dsc_checksums", "compare_versions", "has_igvm", "NEEDED_PATCHES",
]


# --------------------------------------------------------------------------
# the downloaded source, for readers of QEMU's code (citation checks, tests)

SOURCE_ENV = "IGVM_HARNESS_QEMU_SRC"  # a QEMU source tree to read instead of the cache's


@dataclass(frozen=True)
class Downloaded:
    """A QEMU source tree the harness has (or was pointed at), for reading.

    ``debian`` is the tree's Debian packaging directory and ``dsc`` the
    source package's ``.dsc``; either is None when the tree did not come from
    a Debian source package (a developer's checkout named by the variable).
    """
    version: str          # Debian version (``1:10.2.2+ds-1``) or the tree's VERSION
    tree: Path
    dsc: Path | None
    debian: Path | None
    how: str              # where it was found, for messages


def _debian_dir(tree: Path) -> Path | None:
    d = tree / "debian"
    return d if (d / "control").is_file() else None


def _from_env(value: str) -> Downloaded:
    """$IGVM_HARNESS_QEMU_SRC: a QEMU tree; a ``.dsc`` beside it (dpkg-source -x layout) counts."""
    tree = Path(value).expanduser()
    if not (tree / "backends" / "igvm.c").is_file():
        raise HarnessError(f"${SOURCE_ENV}={value}: not a QEMU source tree with IGVM "
                           f"(no backends/igvm.c)")
    tree = tree.resolve()
    dscs = sorted(tree.parent.glob(f"{SOURCE_PACKAGE}_*.dsc"))
    upstream = tree_version(tree)
    dscs = [d for d in dscs if d.name.split("_", 1)[1].startswith(upstream)]
    return Downloaded(upstream, tree, dscs[-1] if dscs else None, _debian_dir(tree),
                      f"${SOURCE_ENV}")


def _cached_versions(downloads: Path) -> list[tuple[str, Path]]:
    """(Debian version, .dsc) of each complete download, newest first."""
    found: dict[str, Path] = {}
    for d in downloads.iterdir() if downloads.is_dir() else ():
        if d.name.endswith(".part") or not d.is_dir():
            continue  # a download in progress or abandoned (fetch_newest's temporary)
        version = d.name.replace("_", ":", 1) if re.match(r"\d+_", d.name) else d.name
        dsc = d / dsc_name(version)
        if dsc.is_file():
            found[version] = dsc
    return [(v, found[v]) for v in sort_newest_first(found)]


def _extracted_tree(work: Path, version: str) -> Path | None:
    """A tree the build already unpacked for *version* (qemu/work/<entry>/, stamped)."""
    safe = re.sub(r"[^A-Za-z0-9.+_-]", "_", version.split(":", 1)[-1])
    for w in sorted(work.glob(f"qemu-{safe}-*")) if work.is_dir() else ():
        stamp = w / ".extracted"
        if stamp.is_file():
            tree = Path(stamp.read_text().strip())
            if (tree / "backends" / "igvm.c").is_file() and _debian_dir(tree):
                return tree
    return None


def _unpack_for_reading(dsc: Path, version: str, dest_root: Path) -> Path:
    """Unpack a downloaded package once into *dest_root*/<version> (atomic rename),
    checked against its .dsc first, without the build's patches."""
    dest = dest_root / version.replace(":", "_")
    if (dest / ".complete").is_file():
        return Path((dest / ".complete").read_text().strip())
    files = verify_dsc(dsc)
    tmp = dest_root / f".tmp-{dest.name}-{os.getpid()}"
    _rmtree(tmp)
    try:
        tree = extract_debian(Fetched(version, dsc, files), tmp, patches=())
        final = dest / tree.relative_to(tmp)
        (tmp / ".complete").write_text(str(final) + "\n")
        try:
            os.rename(tmp, dest)
        except OSError:  # another process finished first: use its copy
            if not (dest / ".complete").is_file():
                raise
    finally:
        _rmtree(tmp)
    return Path((dest / ".complete").read_text().strip())


def downloaded(root: Path | None = None, env: dict[str, str] | None = None) -> Downloaded | None:
    """The QEMU source to read: ``$IGVM_HARNESS_QEMU_SRC``, else the newest Debian
    source package in the harness cache (the tree the build unpacked, else one
    unpacked here under ``qemu/sources/``), else None when nothing was downloaded.

    Raises HarnessError when the variable names something that is not a QEMU
    tree: a wrong setting must not read as "no source".
    """
    env = os.environ if env is None else env
    if env.get(SOURCE_ENV):
        return _from_env(env[SOURCE_ENV])
    if root is None:
        root = cache.root()
    versions = _cached_versions(root / "qemu" / "downloads")
    if not versions:
        return None
    version, dsc = versions[0]
    tree = _extracted_tree(root / "qemu" / "work", version)
    how = "build tree"
    if tree is None:
        (root / "qemu" / "sources").mkdir(parents=True, exist_ok=True)
        tree = _unpack_for_reading(dsc, version, root / "qemu" / "sources")
        how = "unpacked for reading"
    return Downloaded(version, tree, dsc, _debian_dir(tree), f"{how} in {root}")


__all__ += ["Downloaded", "downloaded", "SOURCE_ENV"]
