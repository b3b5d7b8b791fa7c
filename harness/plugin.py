"""pytest plugin: command-line options, markers and fixtures of the harness.

Loaded through the ``pytest11`` entry point (see pyproject.toml).  The
fixtures stay thin: every decision is taken by the layers below
(``harness.qemu.discover`` / ``probe`` choose and describe the QEMU under
test, ``harness.qemu.runner`` runs it, ``harness.guests`` builds payloads).

Skips always name what is missing, in the probe's words.  Each boot keeps a
log directory under the test's ``tmp_path`` (unique per pytest-xdist worker);
on failure its command line, stderr, console and QMP transcript are attached
to the report (``report.sections``) and the directory is recorded in
``item.user_properties`` (JUnit XML shows it).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from harness.options import seconds as _seconds  # one parser for every command's seconds

PLATFORMS = ("auto", "native", "sev", "sev-es", "sev-snp")
ACCELS = ("auto", "kvm", "tcg")
DEFAULT_BOOT_TIMEOUT = 30.0

MARKERS = {
    "platforms(*names)": "run only when --platform is one of names (auto runs all the host can);"
                         " deselected under any other --platform",
    "igvm_platform(*names)": "exercises IGVM platform names: deselected under another --platform,"
                           " run under auto even where the host stops at the hardware boundary",
    "requires(*capabilities)": "skip unless the QEMU/host probe reports every capability named"
                               " (igvm-cfg, kvm, tcg, sev-guest, sev-snp-guest, sev, sev-es,"
                               " sev-snp, early-igvm-syntax, machine-igvm-cfg:<machine>)",
    "qemu": "needs a QEMU-under-test with IGVM support",
    "slow": "takes more than a few seconds",
}

_RUNS_KEY = pytest.StashKey[list]()
NO_QEMU_HINT = "run ./setup.sh or `igvm-harness qemu build`, or pass --qemu"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("igvm-harness", "IGVM conformance harness")
    group.addoption("--platform", choices=PLATFORMS, default="auto",
                    help="platform under test (default: auto, from the host probe)")
    group.addoption("--qemu", metavar="PATH", default=None,
                    help="QEMU binary under test (default: $QEMU, the harness's build, then PATH)")
    group.addoption("--accel", choices=ACCELS, default="auto",
                    help="accelerator for boots (default: auto: tcg, and kvm where usable)")
    group.addoption("--igvm", metavar="FILE", default=None,
                    help="a vendor IGVM image to certify")
    group.addoption("--expect-console", metavar="REGEX", default=None,
                    help="with --igvm: what the boot check waits for on the console "
                         "(default: the markers of the payload found in the image)")
    group.addoption("--disk", metavar="IMG", default=None,
                    help="with --igvm: the vendor's OS disk for the boot check (raw or qcow2, "
                         "never written; needs --expect-console)")
    group.addoption("--boot-timeout", type=_seconds, default=DEFAULT_BOOT_TIMEOUT, metavar="S",
                    help=f"deadline of one QEMU run in seconds (default {DEFAULT_BOOT_TIMEOUT:g})")


def _sigterm_to_interrupt(signum, frame):  # pragma: no cover - exercised by tests/runner
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    for marker, text in MARKERS.items():
        config.addinivalue_line("markers", f"{marker}: {text}")
    # SIGTERM (CI cancel, xdist shutdown) should unwind like Ctrl-C so that
    # every runner's finally-block reaps its QEMU.  Only when nobody else
    # installed a handler.
    try:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    except ValueError:  # not the main thread
        pass
    _CONFIG[:] = [config]
    state = config.stash[_STATE_KEY] = _State(config)
    if config.getoption("--qemu") is not None:
        # A QEMU the user named explicitly that is not there, or not a QEMU,
        # is a usage error: skipping every test would look like a clean run.
        # (A real QEMU without IGVM still runs, and its tests skip naming it.)
        state.resolve()
        if state.caps is None:
            raise pytest.UsageError(f"--qemu: {state.why_none}")


def pytest_unconfigure(config: pytest.Config) -> None:
    from harness.qemu.runner import _kill_all_live
    _kill_all_live()
    _CONFIG.clear()


# ------------------------------------------------------- QEMU under test
@dataclass
class _State:
    config: pytest.Config
    resolved: bool = False
    qemu: str | None = None
    how: str = ""
    caps: object = None
    why_none: str = ""
    guests: dict = field(default_factory=dict)
    guests_error: str | None = None

    def resolve(self) -> None:
        if self.resolved:
            return
        self.resolved = True
        from harness.errors import HarnessError
        from harness.qemu import discover, probe
        try:
            found, notes = discover.find(self.config.getoption("--qemu"))
        except HarnessError as exc:
            self.why_none = str(exc)
            return
        if found is None:
            self.why_none = ("no QEMU with igvm-cfg found (" + "; ".join(notes) + "): "
                             + NO_QEMU_HINT)
            return
        try:
            self.caps = probe.probe(found.path)
        except HarnessError as exc:
            self.why_none = f"cannot probe QEMU {found.path}: {exc}"
            return
        self.qemu, self.how = found.path, found.how

    def missing(self, cap: str) -> str | None:
        self.resolve()
        if self.caps is None:
            return self.why_none
        return self.caps.missing(cap)

    def platform_missing(self, platform: str) -> str | None:
        """Why ``platform`` does not run in this session, or None."""
        chosen = self.config.getoption("--platform")
        if chosen != "auto":
            return None if platform == chosen else f"platform {platform} not selected (--platform={chosen})"
        if platform == "native":
            return None
        return self.missing(platform)


_STATE_KEY = pytest.StashKey[_State]()


def _state(config: pytest.Config) -> _State:
    return config.stash[_STATE_KEY]


def session_caps(config: pytest.Config):
    """The probe of this session's QEMU under test, or None when there is
    none (its tests then skip saying why).  For collection-time decisions
    such as collapsing the cells of an IGVM syntax the binary lacks."""
    st = _state(config)
    st.resolve()
    return st.caps


# --------------------------------------------------- platform deselection
_NOTES_KEY = pytest.StashKey[list]()
_DESELECTED_KEY = pytest.StashKey[int]()   # how many tests this process deselected (-k, -m, --platform)
_CONFIG: list[pytest.Config] = []          # this process's config (pytest_deselected gets none)


def _selected_by_platform(item: pytest.Item, chosen: str) -> bool:
    for mark in item.iter_markers("platforms"):
        if chosen not in mark.args:
            return False
    return all(chosen in mark.args for mark in item.iter_markers("igvm_platform"))


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """--platform=X: tests of other platforms are deselected (pytest's
    "deselected" count), not skipped one by one; one line says why."""
    chosen = config.getoption("--platform")
    if chosen == "auto":
        return
    keep, drop = [], []
    for item in items:
        (keep if _selected_by_platform(item, chosen) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
        config.stash.setdefault(_NOTES_KEY, []).append(
            f"igvm-harness: {len(drop)} tests of platforms other than {chosen} deselected "
            f"(--platform={chosen})")


def pytest_report_collectionfinish(config: pytest.Config, items) -> list[str]:
    return config.stash.get(_NOTES_KEY, []) + _qemu_header(config, items)


def _qemu_header(config: pytest.Config, items) -> list[str]:
    """Which QEMU, and which igvm library it links, when the session runs QEMU tests
    (a verdict on QEMU's IGVM support is one on QEMU plus its libigvm)."""
    if not any(item.get_closest_marker("qemu") for item in items):
        return []
    st = _state(config)
    st.resolve()
    if st.caps is None:
        return [f"igvm-harness: no QEMU under test: {st.why_none}"]
    from harness.qemu.libigvm import describe
    lib = getattr(st.caps, "libigvm", None)
    return [f"igvm-harness: QEMU {st.caps.version} at {st.qemu} ({st.how}); libigvm: "
            f"{describe(lib)}" + (f" [{lib['how']}]" if lib and lib.get("how") else "")]


# Under pytest-xdist the workers collect and deselect; the controller, which
# prints, learns of it from their output and says it in the summary.
_WORKER_NOTES_KEY = pytest.StashKey[list]()


def pytest_deselected(items) -> None:
    if _CONFIG:
        config = _CONFIG[0]
        config.stash[_DESELECTED_KEY] = config.stash.get(_DESELECTED_KEY, 0) + len(items)


def pytest_sessionfinish(session: pytest.Session) -> None:
    wo = getattr(session.config, "workeroutput", None)
    if wo is not None:
        wo["igvm_harness_notes"] = list(session.config.stash.get(_NOTES_KEY, []))
        wo["igvm_harness_deselected"] = session.config.stash.get(_DESELECTED_KEY, 0)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    seen = node.config.stash.setdefault(_WORKER_NOTES_KEY, [])
    output = getattr(node, "workeroutput", {}) or {}
    for note in output.get("igvm_harness_notes") or []:
        if note not in seen:  # every worker collects (and deselects) the same items
            seen.append(note)
    # The summary line counts what the workers deselected (-k, -m, --platform),
    # as a serial run's does (pytest-xdist's controller collects nothing, so it
    # would say none).
    count = output.get("igvm_harness_deselected") or 0
    if count and _DESELECTED_KEY not in node.config.stash:
        node.config.stash[_DESELECTED_KEY] = count
        reporter = node.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.stats.setdefault("deselected", []).extend(
                _DeselectedOnWorker() for _ in range(count))


class _DeselectedOnWorker:
    """A place in the terminal summary's "deselected" count for a test a
    pytest-xdist worker deselected (plugins that read the summary's entries,
    e.g. hypothesis', look for attributes on them)."""

    nodeid = "(deselected on the workers)"
    count_towards_summary = True


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    for note in config.stash.get(_WORKER_NOTES_KEY, []):
        terminalreporter.write_line(note)


def pytest_runtest_setup(item: pytest.Item) -> None:
    st = _state(item.config)
    for mark in item.iter_markers("platforms"):
        reasons = [st.platform_missing(p) for p in mark.args]
        if all(r is not None for r in reasons):
            pytest.skip("; ".join(dict.fromkeys(reasons)))
    for mark in item.iter_markers("requires"):
        for cap in mark.args:
            why = st.missing(cap)
            if why:
                pytest.skip(why)
    if item.get_closest_marker("qemu"):
        why = st.missing("igvm-cfg")
        if why:
            pytest.skip(why)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes ``accel`` runs once per accelerator: tcg and kvm
    under --accel=auto (kvm skips with the probe's reason where unusable)."""
    if "accel" in metafunc.fixturenames and not _already_parametrized(metafunc, "accel"):
        chosen = metafunc.config.getoption("--accel")
        accels = ["tcg", "kvm"] if chosen == "auto" else [chosen]
        metafunc.parametrize("accel", accels, indirect=True)


def _already_parametrized(metafunc: pytest.Metafunc, name: str) -> bool:
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if name in names:
            return True
    return False


@pytest.fixture(scope="session")
def qemu_binary(pytestconfig: pytest.Config) -> str:
    """Path of the QEMU under test (skips, naming why, when there is none)."""
    st = _state(pytestconfig)
    why = st.missing("igvm-cfg")
    if st.qemu is None or why:
        pytest.skip(why or st.why_none)
    return st.qemu


@pytest.fixture(scope="session")
def qemu_caps(pytestconfig: pytest.Config, qemu_binary: str):
    """:class:`harness.qemu.probe.Capabilities` of the QEMU under test."""
    return _state(pytestconfig).caps


@pytest.fixture
def accel(request: pytest.FixtureRequest, qemu_caps) -> str:
    name = getattr(request, "param", None) or request.config.getoption("--accel")
    if name == "auto":
        name = "kvm" if qemu_caps.has("kvm") else "tcg"
    why = qemu_caps.missing(name)
    if why:
        pytest.skip(why)
    return name


@pytest.fixture
def igvm_builder():
    """A fresh :class:`harness.igvm.builder.IgvmBuilder`."""
    from harness.igvm.builder import IgvmBuilder
    return IgvmBuilder()


@pytest.fixture(scope="session")
def guest_images(pytestconfig: pytest.Config) -> dict:
    """The assembled guest payloads (``reset16``, ``payload64``), built once
    per session from fixtures/guests/ (cached by content hash)."""
    from harness.errors import HarnessError
    from harness.guests.build import build_all
    st = _state(pytestconfig)
    if not st.guests and st.guests_error is None:
        try:
            st.guests = build_all()
        except HarnessError as exc:
            st.guests_error = str(exc)
    if st.guests_error:
        pytest.skip(f"guest payloads unavailable: {st.guests_error}")
    return st.guests


@pytest.fixture(scope="session")
def boot_records():
    """The session's :class:`harness.qemu.records.BootRecords`: a boot two
    checks need is run once (in this process; the suites give such checks
    one ``xdist_group``), and both read its record."""
    from harness.qemu.records import BootRecords
    return BootRecords()


@pytest.fixture
def vendor_igvm(pytestconfig: pytest.Config) -> Path:
    path = pytestconfig.getoption("--igvm")
    if not path:
        pytest.skip("no vendor image given (--igvm FILE)")
    p = Path(path)
    if not p.is_file():
        pytest.fail(f"--igvm {path}: no such file", pytrace=False)
    return p


@pytest.fixture
def run_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The test's log directory root; each boot gets ``run_dir/boot-N``."""
    d = tmp_path / "qemu-runs"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture
def new_run_dir(request: pytest.FixtureRequest, run_dir: Path) -> Callable[[], Path]:
    """``new_run_dir() -> Path``: a fresh ``boot-N`` log directory for a run
    the test starts itself (e.g. through harness.qemu.runner.run),
    registered like the ``boot`` fixture's so that its logs are attached
    to the report on failure."""
    runs = request.node.stash.setdefault(_RUNS_KEY, [])

    def make() -> Path:
        d = run_dir / f"boot-{len(runs) + 1}"
        d.mkdir(parents=True)
        runs.append(d)
        return d

    return make


@pytest.fixture
def boot(request: pytest.FixtureRequest, qemu_binary: str, run_dir: Path) -> Callable:
    """``boot(image, **options) -> Outcome``: run an IGVM file (bytes or a
    path) under the QEMU under test.  Options: accel, machine, memory, smp,
    cpu, timeout, prelaunch (callable taking the live QemuRun before
    ``cont``), igvm_syntax, confidential, extra (argv list)."""
    from harness.qemu.cmdline import QemuCommand
    from harness.qemu.runner import run

    runs = request.node.stash.setdefault(_RUNS_KEY, [])
    default_timeout = request.config.getoption("--boot-timeout")
    default_accel = request.getfixturevalue("accel") if "accel" in request.fixturenames else "tcg"

    def _boot(image, *, accel: str | None = None, machine: str = "q35", memory="128M",
              smp=1, cpu: str | None = None, timeout: float | None = None,
              prelaunch=None, igvm_syntax: str = "cfg", confidential=None,
              extra: list[str] | tuple = ()):
        d = run_dir / f"boot-{len(runs) + 1}"
        d.mkdir(parents=True)
        if isinstance(image, (bytes, bytearray, memoryview)):
            path = d / "image.igvm"
            path.write_bytes(bytes(image))
        else:
            path = Path(image)
        cmd = QemuCommand(qemu_binary, machine=machine, accel=accel or default_accel,
                          memory=memory, smp=smp, cpu=cpu, igvm=str(path),
                          igvm_syntax=igvm_syntax, confidential=confidential, extra=list(extra))
        runs.append(d)
        out = run(cmd, d, timeout=timeout or default_timeout, prelaunch=prelaunch)
        return out

    return _boot


# ------------------------------------------------- failure log attachment
_TAIL = 60


def _tail(path: Path, lines: int = _TAIL) -> str:
    try:
        text = path.read_text("utf-8", "replace")
    except OSError:
        return "(missing)"
    rows = text.splitlines()
    cut = len(rows) - lines
    return ("...\n" if cut > 0 else "") + "\n".join(rows[-lines:])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    runs = item.stash.get(_RUNS_KEY, [])
    if not runs or report.when != "call":
        return
    for d in runs:
        if ("qemu_run", str(d)) not in item.user_properties:
            item.user_properties.append(("qemu_run", str(d)))
    if report.failed:
        for d in map(Path, runs):
            parts = []
            for name in ("cmdline.txt", "stderr.log", "console.log", "qmp.log", "outcome.json"):
                parts.append(f"--- {name}\n{_tail(d / name)}")
            report.sections.append((f"igvm-harness QEMU run {d.name} ({d})", "\n".join(parts)))
