"""Build the QEMU-under-test and keep it in the harness's cache.

The cache layout (``qemu/builds``, ``qemu/work``, ``qemu/downloads``,
``libigvm/``, ``tools/meson-venv``...) is written down once, in
:mod:`harness.cache`; the igvm C library QEMU links is chosen and built by
:mod:`harness.qemu.libigvm`.

Firmware: the +ds source has no ROM blobs and none are installed.  None is
needed to run IGVM guests: with an ``igvm-cfg`` the PC machines skip the BIOS
(hw/i386/pc_sysfw.c checks ``X86_MACHINE(pcms)->igvm``) and ``-nodefaults``
avoids VGA/NIC option ROMs.  The only ROM still looked for is the APIC's
``kvmvapic.bin``: a harmless ``rom: file kvmvapic.bin ... error`` line on
stderr, silenced by ``-global apic-common.vapic=off`` (or by ``-L
/usr/share/qemu`` with Debian's qemu-system-data installed).  Checked with
q35/pc under TCG and KVM (tests/qemu/test_build_smoke.py).

An entry becomes visible only by ``rename`` of a finished temporary
directory, so a killed build can never be mistaken for a result; stale
temporaries are removed on the next run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, TextIO

from harness import cache, logged
from harness.errors import HarnessError
from harness.locks import exclusive
from harness.outputs import write_atomic
from harness.qemu.pids import pid_alive
from harness.qemu import deps, devices, libigvm, source
from harness.qemu.libigvm import Libigvm

BINARY = "qemu-system-x86_64"
# Bump when the build recipe changes in a way that changes the result.
RECIPE = 1
MESON_PIN = "meson==1.9.0"      # QEMU 10.2's pythondeps.toml 'installed' version
PYCOTAP_PIN = "pycotap==1.3.1"  # same file; configure's meson group asks for it

# configure options: the target and the three features under test, then
# everything optional off (--without-default-features) so that the build
# needs only glib and zlib and takes minutes.  --disable-download: only
# Debian and PyPI are reachable; --disable-install-blobs: the +ds tarball
# has no firmware (the harness runs QEMU with -nodefaults and IGVM, which
# replaces the BIOS).
CONFIGURE_OPTIONS: tuple[str, ...] = (
    "--target-list=x86_64-softmmu",
    "--enable-igvm",
    "--enable-kvm",
    "--enable-tcg",
    "--without-default-features",
    "--disable-docs",
    "--disable-tools",
    "--disable-guest-agent",
    "--disable-download",
    "--disable-install-blobs",
    "--disable-werror",
)

# The lean build: the same, plus only the devices the harness uses
# (harness/qemu/devices.py) instead of QEMU's default device set.
LEAN_OPTIONS: tuple[str, ...] = CONFIGURE_OPTIONS + devices.configure_options()
# What `qemu build` (and set-up) builds: the lean set.  The whole test suite
# and tests/qemu/test_lean_build.py (every machine/device combination the
# harness uses, OVMF + Linux) pass on it; `qemu build --all-devices` keeps
# QEMU's default device set (CONFIGURE_OPTIONS).
DEFAULT_OPTIONS: tuple[str, ...] = LEAN_OPTIONS


def cache_root() -> Path:
    """The harness cache (:mod:`harness.cache` owns its layout); kept under
    this name for the QEMU layer's callers and tests."""
    return cache.root()


def compiler_env(root: Path, env: dict[str, str]) -> dict[str, str]:
    """``CC=ccache cc`` when Debian's ccache is installed and CC is not set.

    configure splits ``$CC`` into words for meson's ``c`` binary, so the
    wrapper reaches every compile (a rebuild after a cache-key change, a
    wiped build tree or another QEMU version recompiles only what differs);
    the cache lives with the harness's
    (``<cache>/ccache``) unless CCACHE_DIR says otherwise.  The compiler
    output is the same, so this is not part of the build's cache key.
    """
    if "CC" in env or not shutil.which("ccache"):
        return env
    # depend mode: ccache hashes the -MD output meson asks for instead of running
    # the preprocessor once more per file, which keeps a cold build's overhead low
    return {**env, "CC": "ccache cc", "CCACHE_DIR": env.get("CCACHE_DIR") or str(root / "ccache"),
            "CCACHE_DEPEND": env.get("CCACHE_DEPEND", "1")}


def install_targets(bdir: Path, env: dict[str, str] | None = None) -> list[str]:
    """The build-tree files ``meson install`` copies, as ninja targets.

    QEMU's default ninja target also builds its unit tests, qtests and the
    softfloat/testfloat suites (tests/meson.build): about a third of the
    build steps, none of them installed or used by the harness.  Building
    only what is installed skips them; the installed files are the same.
    An empty list (no meson in the build's pyvenv, or no answer) means
    "build everything" as before.
    """
    meson = bdir / "pyvenv" / "bin" / "meson"
    if not os.access(meson, os.X_OK):
        return []
    res = subprocess.run([str(meson), "introspect", "--installed"], cwd=bdir, env=env,
                         capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    try:
        installed = json.loads(res.stdout) if res.returncode == 0 else {}
    except ValueError:
        installed = {}
    out = []
    for src in installed if isinstance(installed, dict) else ():
        path = Path(src)
        if path.is_relative_to(bdir):
            out.append(str(path.relative_to(bdir)))
    return sorted(out) if BINARY in out else []


def write_device_config(tree: Path, options: tuple[str, ...]) -> Path | None:
    """Put the lean build's devices file where configure looks for it."""
    name = devices.config_file_for(options)
    if name is None:
        return None
    if name != devices.config_name():
        raise HarnessError(f"configure option --with-devices-x86_64={name} names a device list "
                           f"this harness does not have (current: {devices.config_name()})")
    path = tree / "configs" / "devices" / "x86_64-softmmu" / f"{name}.mak"
    text = devices.mak_text()
    if not (path.is_file() and path.read_text() == text):
        path.parent.mkdir(parents=True, exist_ok=True)  # (configure judges the tree itself)
        path.write_text(text)
    return path


# --------------------------------------------------------------------------
# progress and logging

class Progress:
    """Phase lines and a one-line [N/M] updater on stderr; full output to a log."""

    def __init__(self, stream: TextIO = sys.stderr, quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet
        self.tty = stream.isatty()
        self._last_pct = -1
        self._open_line = False

    def phase(self, text: str) -> None:
        if self.quiet:
            return
        self._end_line()
        print(f"igvm-harness: {text}", file=self.stream, flush=True)

    def step(self, n: int, total: int, what: str) -> None:
        if self.quiet or total <= 0:
            return
        if self.tty:
            line = f"[{n}/{total}] {what}"[:100]
            self.stream.write("\r" + line.ljust(100))
            self.stream.flush()
            self._open_line = True
        else:
            pct = n * 100 // total
            if pct // 10 != self._last_pct // 10 or n == total:
                self._last_pct = pct
                print(f"igvm-harness:   [{n}/{total}] {pct}%", file=self.stream, flush=True)

    def _end_line(self) -> None:
        if self._open_line:
            self.stream.write("\n")
            self._open_line = False

    def done(self) -> None:
        self._end_line()


NINJA_STEP = re.compile(r"^\[(\d+)/(\d+)\]\s*(.*)")


def run_logged(cmd: list[str], log: TextIO, cwd: Path | None = None,
               env: dict[str, str] | None = None, progress: Progress | None = None) -> int:
    """Run *cmd*, copy its output to *log*, feed ninja's [N/M] lines to *progress*."""
    def on_line(line: str) -> None:
        m = NINJA_STEP.match(line)
        if m and progress:
            progress.step(int(m.group(1)), int(m.group(2)), m.group(3).strip())

    try:
        return logged.run(cmd, log, cwd=cwd, env=env, on_line=on_line, keep=False)[0]
    finally:
        if progress:
            progress.done()


def first_error(log_path: Path, patterns=(r"^ERROR: .*", r".*: error: .*", r"^FAILED: .*",
                                          r"^error_exit.*", r".*[Ee]rror.*")) -> str:
    """The first line of the log that names the cause, best pattern first."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    for pat in patterns:
        rx = re.compile(pat)
        for line in lines:
            if rx.match(line):
                return line.strip()[:200]
    return lines[-1].strip()[:200] if lines else "no output"


# --------------------------------------------------------------------------
# tools: meson from PyPI

def ensure_meson(root: Path, log: TextIO, progress: Progress) -> Path:
    """A venv with meson (and pycotap) whose python runs QEMU's configure.

    QEMU's mkvenv nests its own venv inside it and sees these packages, so
    configure never needs the wheels the +ds tarball strips.
    """
    venv = root / "tools" / "meson-venv"
    stamp = venv / ".complete"
    want = f"{MESON_PIN} {PYCOTAP_PIN}\n"
    if stamp.is_file() and stamp.read_text() == want:
        return venv / "bin" / "python3"
    progress.phase(f"creating build venv with {MESON_PIN} from PyPI")
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    if run_logged([sys.executable if not _in_venv() else _base_python(), "-m", "venv",
                   str(venv)], log) != 0:
        raise HarnessError(f"cannot create the build venv {venv} (is python3-venv installed?); "
                           f"see {log.name}")
    if run_logged([str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", "-q",
                   MESON_PIN, PYCOTAP_PIN], log) != 0:
        raise HarnessError(f"pip install {MESON_PIN} failed (PyPI reachable?); see {log.name}")
    stamp.write_text(want)
    return venv / "bin" / "python3"


def _in_venv() -> bool:
    return sys.prefix != sys.base_prefix


def _base_python() -> str:
    for cand in (os.path.join(sys.base_prefix, "bin", "python3"), shutil.which("python3")):
        if cand and os.path.exists(cand):
            return cand
    return sys.executable


# --------------------------------------------------------------------------
# cache keys and entries

def cache_key(version: str, source_identity: str, libigvm: str,
              options: tuple[str, ...]) -> str:
    blob = json.dumps({"recipe": RECIPE, "version": version, "source": source_identity,
                       "libigvm": libigvm, "options": list(options)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def entry_name(version: str, key: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9.+_-]", "_", version.split(":", 1)[-1])
    return f"qemu-{safe}-{key}"


@dataclass
class BuildInfo:
    name: str
    version: str
    source: str
    libigvm: str
    options: list[str]
    binary: str
    timings: dict[str, float] = field(default_factory=dict)
    built_at: str = ""
    #: which igvm C library is linked: origin (system / crates.io / own), version,
    #: and what identifies it (crate checksum, rustc, fallback reason): the
    #: record `qemu probe` and the reports read (harness.qemu.libigvm)
    libigvm_info: dict = field(default_factory=dict)


def is_complete(entry: Path) -> bool:
    """A usable entry: renamed into place with its info and binary."""
    return (not entry.name.startswith(".") and (entry / "build-info.json").is_file()
            and os.access(entry / "bin" / BINARY, os.X_OK))


def builds_dir(root: Path) -> Path:
    return root / "qemu" / "builds"


def find_entry(root: Path, name: str) -> Path | None:
    e = builds_dir(root) / name
    return e if is_complete(e) else None


def set_current(root: Path, entry: Path) -> None:
    cur = root / "qemu" / "current.json"
    write_atomic(cur, json.dumps({"entry": str(entry), "binary": str(entry / "bin" / BINARY)}),
                 prefix=".current.json.")


def current_binary(root: Path | None = None) -> Path | None:
    """The built QEMU-under-test: current.json's entry, else the newest complete one."""
    root = root or cache_root()
    cur = root / "qemu" / "current.json"
    try:
        entry = Path(json.loads(cur.read_text())["entry"])
        if is_complete(entry):
            return entry / "bin" / BINARY
    except (OSError, ValueError, KeyError, TypeError):
        pass
    d = builds_dir(root)
    entries = [e for e in d.iterdir() if is_complete(e)] if d.is_dir() else []
    if not entries:
        return None
    newest = max(entries, key=lambda e: (e / "build-info.json").stat().st_mtime)
    return newest / "bin" / BINARY


def find_built(options: tuple[str, ...], root: Path | None = None) -> Path | None:
    """The newest complete build made with exactly ``options`` (e.g. LEAN_OPTIONS), or None."""
    d = builds_dir(root or cache_root())
    best: tuple[float, Path] | None = None
    for e in (d.iterdir() if d.is_dir() else ()):
        if not is_complete(e):
            continue
        try:
            info = json.loads((e / "build-info.json").read_text())
        except ValueError:
            continue
        mtime = (e / "build-info.json").stat().st_mtime
        if isinstance(info, dict) and info.get("options") == list(options) \
                and (best is None or mtime > best[0]):
            best = (mtime, e / "bin" / BINARY)
    return best[1] if best else None


def clean_stale(root: Path) -> None:
    """Remove temporaries left by builds whose process is gone."""
    d = builds_dir(root)
    if not d.is_dir():
        return
    for t in [*d.glob(".tmp-*"), *(root / "qemu").glob(".work-*")]:
        pid = t.name.rsplit("-", 1)[-1]
        if pid.isdigit() and pid_alive(int(pid)) and int(pid) != os.getpid():
            continue
        shutil.rmtree(t, ignore_errors=True)


KEEP_ENTRIES = 4


def prune(root: Path, keep: int = KEEP_ENTRIES) -> list[Path]:
    """Remove all but the *keep* newest complete entries (never the current one)."""
    d = builds_dir(root)
    cur = current_binary(root)
    entries = sorted((e for e in d.iterdir() if is_complete(e)) if d.is_dir() else (),
                     key=lambda e: (e / "build-info.json").stat().st_mtime, reverse=True)
    removed = []
    for e in entries[keep:]:
        if cur is not None and cur.parent.parent == e:
            continue
        shutil.rmtree(e, ignore_errors=True)
        removed.append(e)
    return removed




# --------------------------------------------------------------------------
# the build

# Fixed configure prefix (QEMU bakes it into config-host.h, so it must not
# vary between builds or everything recompiles); installed with DESTDIR and
# moved into the entry, which works because QEMU installs are relocatable.
INSTALL_PREFIX = "/qemu-under-test"


def sync_libigvm(prefix: Path, stable: Path) -> Path:
    """Mirror an installed library into a fixed path inside the build tree.

    QEMU's compile commands then name the same ``-I`` path whatever library
    version is used, and files are replaced only when their content differs,
    so unchanged headers keep their mtime: a new library means a relink plus
    the few files including ``<igvm/...>``, not a rebuild of QEMU.  Paths
    inside ``.pc`` files are rewritten to the fixed location.
    """
    seen = set()
    for src in sorted(prefix.rglob("*")):
        rel = src.relative_to(prefix)
        if rel.parts[0].startswith(".") or not src.is_file():
            continue
        seen.add(rel)
        data = src.read_bytes()
        if src.suffix == ".pc":
            data = data.replace(str(prefix).encode(), str(stable).encode())
        dst = stable / rel
        if dst.is_file() and dst.read_bytes() == data:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(dst, data, prefix=f".{dst.name}.", mode=src.stat().st_mode & 0o777)
    for dst in sorted(stable.rglob("*"), reverse=True) if stable.is_dir() else ():
        if dst.is_file() and dst.relative_to(stable) not in seen:
            dst.unlink()
    return stable


def _prepared_tree(resolved: source.Resolved, work: Path, log: TextIO,
                   progress: Progress) -> Path:
    """The source tree in *work* (extracted and patched once, stamped)."""
    if resolved.spec.kind == "tree":
        return source.materialize(resolved, work, log=log)
    stamp = work / ".extracted"
    if stamp.is_file():
        tree = Path(stamp.read_text().strip())
        if (tree / "configure").is_file():
            return tree
    progress.phase(f"preparing QEMU {resolved.version} source")
    shutil.rmtree(work, ignore_errors=True)
    tree = source.materialize(resolved, work, log=log)
    stamp.write_text(str(tree) + "\n")
    return tree


def _offline_fallback(root: Path, spec: source.SourceSpec, lib: Libigvm,
                      options: tuple[str, ...]) -> "BuildResult | None":
    """When apt cannot answer (offline), the newest cached Debian build that
    matches everything else (library, options) still serves ``--source debian``."""
    if spec.kind != "debian" or spec.version:
        return None
    d = builds_dir(root)
    best = None
    for e in (d.iterdir() if d.is_dir() else ()):
        if not is_complete(e):
            continue
        try:
            info = BuildInfo(**json.loads((e / "build-info.json").read_text()))
        except (ValueError, TypeError):
            continue
        if (info.source.startswith("debian-") and info.libigvm == lib.identity
                and info.options == list(options)):
            if best is None or source.compare_versions(info.version, best[1].version) > 0:
                best = (e, info)
    if best is None:
        return None
    return BuildResult(best[0] / "bin" / BINARY, best[0], True, best[1])


@dataclass
class BuildResult:
    binary: Path
    entry: Path
    cached: bool
    info: BuildInfo


def build(source_arg: str | None = None, jobs: int | None = None, install_deps: bool = False,
          root: Path | None = None, progress: Progress | None = None,
          options: tuple[str, ...] = DEFAULT_OPTIONS, libigvm_choice: str = "auto",
          make_current: bool = True) -> BuildResult:
    """Obtain the source, build and install QEMU-under-test; reuse the cache.

    ``libigvm_choice``: the igvm library to link (harness.qemu.libigvm:
    auto, system, crates.io, own); ``make_current=False`` builds a variant
    (the own-library QEMU of ``qemu compare-libigvm``) without making it the
    QEMU-under-test.
    """
    root = root or cache_root()
    progress = progress or Progress()
    jobs = jobs or os.cpu_count() or 1
    if jobs < 1:
        raise HarnessError("--jobs must be at least 1")
    spec = source.parse_source(source_arg)
    logs = root / "qemu" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    clean_stale(root)
    prep_log_path = logs / "prepare.log"
    timings: dict[str, float] = {}
    with open(prep_log_path, "w") as prep_log:
        deps.ensure(install_deps, log=prep_log)
        # the library first: with `auto`, an unreachable registry turns it into
        # the own library, and the cache key must name the one really linked
        lib = libigvm.prepare(libigvm_choice, root, prep_log, progress)
        t = time.monotonic()
        try:
            resolved = source.resolve(spec, root / "qemu" / "downloads", log=prep_log,
                                      progress=progress.phase)
        except HarnessError as exc:
            fallback = _offline_fallback(root, spec, lib, options)
            if fallback is None:
                raise
            progress.phase(f"warning: {exc}; using the cached build {fallback.entry}")
            if make_current:
                set_current(root, fallback.entry)
            return fallback
        timings["source"] = round(time.monotonic() - t, 1)
    key = cache_key(resolved.version, resolved.identity, lib.identity, options)
    name = entry_name(resolved.version, key)
    existing = find_entry(root, name)
    if existing:
        info = BuildInfo(**json.loads((existing / "build-info.json").read_text()))
        if make_current:
            set_current(root, existing)
        return BuildResult(existing / "bin" / BINARY, existing, True, info)

    log_path = logs / f"{name}.log"
    tmp = builds_dir(root) / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # The build tree outlives the build: keyed by source and options only, so
    # a new igvm library recompiles the few files that use it, not all QEMU.
    work = root / "qemu" / "work" / entry_name(
        resolved.version, cache_key(resolved.version, resolved.identity, "", options))
    work.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log_path, "w") as log, exclusive(work.with_name(work.name + ".lock")):
            python = ensure_meson(root, log, progress)
            t = time.monotonic()
            tree = _prepared_tree(resolved, work, log, progress)
            timings["extract"] = round(time.monotonic() - t, 1)
            write_device_config(tree, options)
            bdir = work / "build"
            env = compiler_env(root, dict(os.environ))
            pc_text = ""
            if lib.pkgconfig_dir:
                stable = sync_libigvm(Path(lib.pkgconfig_dir).parent.parent, work / "libigvm")
                pc_dir = stable / "lib" / "pkgconfig"
                pc_text = (pc_dir / "igvm.pc").read_text()
                env["PKG_CONFIG_PATH"] = os.pathsep.join(
                    p for p in (str(pc_dir), env.get("PKG_CONFIG_PATH")) if p)
            cmd = [str(tree / "configure"), f"--python={python}", f"--prefix={INSTALL_PREFIX}",
                   *options]
            stamp = work / ".configured"
            # A new library at the same path needs no new configure unless its
            # .pc changed (a system library is part of the identity instead).
            want = json.dumps({"cmd": cmd, "igvm.pc": pc_text,
                               "libigvm": "" if lib.pkgconfig_dir else lib.identity,
                               "pkg_config_path": env.get("PKG_CONFIG_PATH", "")})
            t = time.monotonic()
            if not (stamp.is_file() and stamp.read_text() == want
                    and (bdir / "build.ninja").is_file()):
                stamp.unlink(missing_ok=True)
                bdir.mkdir(parents=True, exist_ok=True)
                progress.phase(f"configuring QEMU {resolved.version} (log: {log_path})")
                if run_logged(cmd, log, cwd=bdir, env=env) != 0:
                    shutil.rmtree(bdir, ignore_errors=True)
                    raise HarnessError(f"QEMU configure failed: {first_error(log_path)}; "
                                       f"see {log_path}")
                stamp.write_text(want)
            timings["configure"] = round(time.monotonic() - t, 1)
            targets = install_targets(bdir, env)
            progress.phase(f"compiling with {jobs} job(s) in {bdir}")
            t = time.monotonic()
            if run_logged(["ninja", "-j", str(jobs), *targets], log, cwd=bdir, env=env,
                          progress=progress) != 0:
                raise HarnessError(f"QEMU compile failed: {first_error(log_path)}; "
                                   f"see {log_path}")
            timings["compile"] = round(time.monotonic() - t, 1)
            t = time.monotonic()
            stage = tmp / ".stage"
            # `ninja install` would first build the default target (tests and all);
            # meson's own installer with --no-rebuild copies what was built
            install = ([str(bdir / "pyvenv" / "bin" / "meson"), "install", "--no-rebuild",
                        "--quiet"] if targets else ["ninja", "install"])
            if run_logged(install, log, cwd=bdir, env={**env, "DESTDIR": str(stage)}) != 0:
                raise HarnessError(f"QEMU install failed: {first_error(log_path)}; "
                                   f"see {log_path}")
            # relocatable install: move <stage>/<prefix>/* up into the entry
            installed = stage / INSTALL_PREFIX.lstrip("/")
            for item in installed.iterdir() if installed.is_dir() else ():
                os.replace(item, tmp / item.name)
            shutil.rmtree(stage, ignore_errors=True)
            timings["install"] = round(time.monotonic() - t, 1)
            binary = tmp / "bin" / BINARY
            if not os.access(binary, os.X_OK):
                raise HarnessError(f"QEMU install produced no {BINARY}; see {log_path}")
            info = BuildInfo(name, resolved.version, resolved.identity, lib.identity,
                             list(options), str(builds_dir(root) / name / "bin" / BINARY),
                             timings, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             lib.as_dict())
            (tmp / "build-info.json").write_text(json.dumps(asdict(info), indent=2) + "\n")
        shutil.copy2(log_path, tmp / "build.log")
        final = builds_dir(root) / name
        shutil.rmtree(final, ignore_errors=True)  # an incomplete leftover of the same name
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if make_current:
        set_current(root, final)
    prune(root)
    progress.phase(f"built {final / 'bin' / BINARY} "
                   f"(configure {timings['configure']} s, compile {timings['compile']} s)")
    return BuildResult(final / "bin" / BINARY, final, False, info)
