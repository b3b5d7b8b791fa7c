"""Run one QEMU: process, QMP (qemu.qmp), serial console (pexpect).

Every run gets a log directory (``cmdline.txt``, ``stderr.log``,
``console.log``, ``qmp.log``, ``outcome.json``) and a private short socket
directory (unix socket paths are limited to 108 bytes) holding the QMP
socket and COM1's two FIFOs (:func:`console_fifos`).  The harness
listens on the QMP socket and QEMU connects to it.  With pre-launch queries
QEMU starts paused (``-S``): the caller queries, then ``cont``; so do runs
that may stop the VM for good (a panic device, a confidential guest: see
:func:`run`).  Otherwise the guest starts at once and QMP is negotiated
while it runs (a guest that finishes first just leaves a shorter
transcript), which keeps the per-boot cost close to the raw QEMU command.

Cleanup is not optional: the process runs in its own process group and is
killed as a group on timeout, exception or Ctrl-C; a SIGKILLed harness
(e.g. a killed xdist worker) takes it along (``-run-with exit-with-parent=on``
where QEMU has it, else ``PR_SET_PDEATHSIG`` set between fork and exec); an ``atexit`` hook kills whatever is still registered; the
socket directory is removed in every case.

QMP events.  Every event QEMU sends (STOP, RESUME, GUEST_PANICKED,
SHUTDOWN, ...) is written to ``qmp.log`` with the harness's clock (QEMU's
own ``timestamp`` is inside the event) and kept in ``Outcome.events``.
While waiting, the runner watches the console and the QMP socket together;
on a STOP event it asks ``query-status``, and when the VM stopped for good
(``guest-panicked``, ``internal-error``: outcome.STOP_STATES) it quits QEMU
at once and the run is STOPPED instead of HUNG at the deadline.

The console.  Real firmware never exits by itself, so a run can also end
on what the guest prints (:func:`run`'s ``until`` marker and ``fail``
pattern, watched by harness.qemu.console): the runner then quits QEMU over
QMP, and reports progress (the console's last line) on long runs.  This is
the harness's one console watcher: the suites' firmware and Linux boots and
the certification boot all go through :func:`run`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import errno
import fcntl
import os
import select
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import pexpect
import pexpect.fdpexpect
from qemu.qmp.legacy import QEMUMonitorProtocol

from harness.errors import HarnessError
from harness.guests.protocol import GuestReport
from harness.qemu.cmdline import QemuCommand
from harness.qemu.console import ConsoleLog, ConsolePattern
from harness.qemu.pids import pid_alive
from harness.qemu.outcome import STOP_STATES, Outcome, Status, classify
from harness.terminal import plain

DEFAULT_TIMEOUT = 30.0
#: ``progress(seconds since QEMU's start, line)``: notes of a long run.
Progress = Callable[[float, str], None]
EVENT_SETTLE = 0.05   # s to wait for the event whose bytes made the QMP socket readable
QUIT_GRACE = 10.0     # s QEMU gets to exit after "quit" before it is killed
MARKER_GRACE = 0.3    # s of console kept after an ``until`` / ``fail`` match, before the quit
NEGOTIATE_TIMEOUT = 5.0  # s QMP capabilities negotiation may take (see _negotiate)
CONSOLE_PIPE_BYTES = 1 << 20  # the console FIFO's size (see console_fifos)
CONSOLE_READ = 64 * 1024      # bytes read from the console at a time
SOCKET_PATH_MAX = 107

# ------------------------------------------------------------ observers
#: ``observer(outcome, fresh)``: called with every finished run's Outcome
#: (``fresh``; a run driven by hand gives a RunTimes), and with every boot
#: record handed out again (harness.qemu.records, not fresh): the pytest
#: timing table (harness.report.pytest_timing).  An observer must not raise.
Observer = Callable[[Outcome, bool], None]
_OBSERVERS: list[Observer] = []


class RunTimes:
    """What the observers learn of a run driven by hand, which has no
    classified Outcome: its times (the attributes an Outcome has too)."""

    class _Status:
        value = "interactive"

    status = _Status()

    def __init__(self, duration: float, qmp_at: float | None, cpu_seconds: float) -> None:
        self.duration, self.qmp_at, self.cpu_seconds = duration, qmp_at, cpu_seconds


def add_observer(observer: Observer) -> None:
    if observer not in _OBSERVERS:
        _OBSERVERS.append(observer)


def remove_observer(observer: Observer) -> None:
    if observer in _OBSERVERS:
        _OBSERVERS.remove(observer)


def notify(outcome: Outcome, fresh: bool) -> None:
    for observer in list(_OBSERVERS):
        observer(outcome, fresh)


# ------------------------------------------------------- process registry
_LIVE: dict[int, "QemuRun"] = {}
_LIVE_LOCK = threading.Lock()


def _kill_all_live() -> None:
    with _LIVE_LOCK:
        runs = list(_LIVE.values())
    for run in runs:
        run.kill()
        run.cleanup()


atexit.register(_kill_all_live)


def live_runs() -> list["QemuRun"]:
    with _LIVE_LOCK:
        return list(_LIVE.values())


_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:  # pragma: no cover - best effort
        pass


SOCKET_PREFIX = "igvmt-"




def sweep_stale_socket_dirs(base: Path) -> int:
    """Remove socket directories left by harness processes that died
    without cleaning up (SIGKILLed workers).  Names carry the owner pid."""
    removed = 0
    try:
        entries = list(os.scandir(base))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(SOCKET_PREFIX):
            continue
        pid_text = entry.name[len(SOCKET_PREFIX):].split("-", 1)[0]
        if pid_text.isdigit() and not pid_alive(int(pid_text)):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
    return removed


_swept: set[str] = set()


SOCKET_BASE_MAX = 70  # + "/igvmt-<pid>-<8>/qmp.sock" stays below 108 bytes


_EXIT_WITH_PARENT: dict[tuple, bool] = {}


def supports_exit_with_parent(binary: str) -> bool:
    """Whether QEMU has ``-run-with exit-with-parent=on`` (QEMU >= 9.1,
    system/exit-with-parent.c).  With it QEMU dies with the harness by
    itself and the runner can spawn without a preexec hook (vfork, cheaper);
    older QEMUs get PR_SET_PDEATHSIG from a preexec hook instead."""
    import subprocess

    try:
        st = os.stat(binary)
    except OSError:
        return False
    key = (binary, st.st_mtime_ns, st.st_size)
    if key not in _EXIT_WITH_PARENT:
        try:
            out = subprocess.run([binary, "-help"], capture_output=True, text=True, timeout=20,
                                 stdin=subprocess.DEVNULL).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        _EXIT_WITH_PARENT[key] = "exit-with-parent" in out
    return _EXIT_WITH_PARENT[key]


def wait_exit(proc, timeout: float) -> int:
    """Wait for ``proc`` without Popen.wait's sleep-polling (pidfd)."""
    import subprocess

    if proc.poll() is not None:
        return proc.returncode
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        return proc.wait(timeout=timeout)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    if not ready:
        raise subprocess.TimeoutExpired(proc.args, timeout)
    return proc.wait()


def socket_base() -> Path:
    """Where socket directories go: $IGVM_HARNESS_SOCKDIR, else
    $XDG_RUNTIME_DIR, else /tmp (whichever is short enough)."""
    explicit = os.environ.get("IGVM_HARNESS_SOCKDIR")
    if explicit:
        if len(explicit) > SOCKET_BASE_MAX or not os.path.isdir(explicit):
            raise HarnessError(f"IGVM_HARNESS_SOCKDIR={explicit}: not a directory with a path"
                               f" of at most {SOCKET_BASE_MAX} characters (unix socket limit)")
        return Path(explicit)
    for base in (os.environ.get("XDG_RUNTIME_DIR"), "/tmp"):
        if base and os.path.isdir(base) and len(base) <= SOCKET_BASE_MAX:
            return Path(base)
    return Path(tempfile.gettempdir())


def socket_dir() -> Path:
    """A fresh private directory with a short path for unix sockets
    (``<base>/igvmt-<pid>-XXXX``); stale ones of dead owners are swept
    once per process and base."""
    base = socket_base()
    if str(base) not in _swept:
        _swept.add(str(base))
        sweep_stale_socket_dirs(base)
    return Path(tempfile.mkdtemp(prefix=f"{SOCKET_PREFIX}{os.getpid()}-", dir=base))


class QmpTranscript:
    """Writes every QMP exchange to ``qmp.log``."""

    def __init__(self, path: Path) -> None:
        self._fh = open(path, "a", encoding="utf-8")
        self._t0 = time.monotonic()

    def note(self, direction: str, payload) -> None:
        self._fh.write(f"{time.monotonic() - self._t0:8.3f} {direction} {payload}\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class QemuRun:
    """One live QEMU process.  Use :func:`run` unless you need to talk to
    the process while it runs."""

    def __init__(self, cmd: QemuCommand, run_dir: Path, timeout: float = DEFAULT_TIMEOUT,
                 paused: bool = True, until: ConsolePattern | None = None, *,
                 fail: ConsolePattern | None = None, stop: bool = True,
                 progress: Progress | None = None, progress_every: float = 10.0,
                 answers: tuple[tuple[ConsolePattern, bytes], ...] = ()) -> None:
        self.cmd = cmd
        self.answers = tuple(answers)   # (console prompt, keys typed once when it appears)
        self.paused = paused
        self.until = until        # console marker (see run())
        self.fail = fail          # console failure pattern: ends the run at once
        self.stop = stop          # quit QEMU at the marker, or wait for its exit
        self.progress = progress
        self.progress_every = progress_every
        self._noted_marker = False
        self.run_dir = Path(run_dir)
        self.timeout = timeout
        self.proc: "subprocess.Popen | None" = None
        self.qmp: QEMUMonitorProtocol | None = None
        self.console: pexpect.fdpexpect.fdspawn | None = None
        self.sock_dir: Path | None = None
        self._listener: socket.socket | None = None
        self._console_out: int | None = None  # our end of the console's output FIFO
        self._console_in: int | None = None   # ... and of its input FIFO
        self._pidfd: int | None = None        # readable once QEMU has exited
        self._console_log = None
        self._transcript: QmpTranscript | None = None
        self._t0 = 0.0
        self._deadline = 0.0
        self.timed_out = False
        self.prelaunch: dict = {}
        self.events: list[dict] = []
        self.run_state: str | None = None     # set when the VM stopped for good
        self._qmp_fd: int | None = None       # dup of the QMP socket, for select()
        self._seen = 0                        # events already looked at for STOP
        self.qmp_at: float | None = None      # s from the start to the QMP greeting
        self._children_cpu0 = 0.0             # this process's reaped children's CPU s at start
        self._finished = False                # _finish built the Outcome

    # ------------------------------------------------------------ start
    def start(self) -> "QemuRun":
        # From the socket directory's creation on, anything that ends start()
        # early (SIGTERM/Ctrl-C arriving as KeyboardInterrupt while the
        # exit-with-parent probe runs, a bind error) removes it again:
        # `with QemuRun(...)` calls no __exit__ when __enter__ raises.
        try:
            return self._start()
        except BaseException:
            self.kill()
            self.cleanup()
            raise

    def _start(self) -> "QemuRun":
        import subprocess

        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.sock_dir = socket_dir()
        qmp_path = str(self.sock_dir / "qmp.sock")
        if len(qmp_path) > SOCKET_PATH_MAX:
            raise HarnessError(f"socket path too long for AF_UNIX: {qmp_path}")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(qmp_path)
        self._listener.listen(1)
        self._console_out, self._console_in = console_fifos(self.sock_dir / "con")
        self.cmd.qmp_path = qmp_path
        self.cmd.console_path = str(self.sock_dir / "con")
        self.cmd.paused = self.paused
        ewp = supports_exit_with_parent(self.cmd.binary)
        self.cmd.exit_with_parent = ewp
        argv = self.cmd.argv()
        (self.run_dir / "cmdline.txt").write_text(self.cmd.shell() + "\n")
        self._transcript = QmpTranscript(self.run_dir / "qmp.log")
        self._console_log = ConsoleLog(self.run_dir / "console.log", self.until, self.fail,
                                       tail=self.progress is not None, answers=self.answers)
        stderr = open(self.run_dir / "stderr.log", "wb")
        self._children_cpu0 = _children_cpu()
        self._t0 = time.monotonic()
        self._deadline = self._t0 + self.timeout
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stderr,
                                         stderr=stderr, env=qemu_env(self.run_dir),
                                         start_new_session=True,
                                         preexec_fn=None if ewp else _child_setup)
        except OSError as exc:
            self.cleanup()
            raise HarnessError(f"cannot start QEMU {argv[0]}: {exc.strerror}") from None
        finally:
            stderr.close()
        with _LIVE_LOCK:
            _LIVE[self.proc.pid] = self
        try:
            self._pidfd = os.pidfd_open(self.proc.pid)
            self.console = pexpect.fdpexpect.fdspawn(self._console_out, timeout=self.timeout,
                                                     maxread=CONSOLE_READ)
            self.console.logfile_read = self._console_log
            self._connect_qmp()
        except BaseException:  # Ctrl-C or a bug while starting: leave nothing behind
            self.kill()
            self.cleanup()
            raise
        return self

    def _remaining(self) -> float:
        return max(0.0, self._deadline - time.monotonic())

    def _connect_qmp(self) -> None:
        """Accept QEMU's QMP connection and wait for its greeting, watching
        the process: QEMU may exit during machine set-up (bad IGVM file)."""
        assert self._listener and self.proc
        conn = None
        while conn is None:
            if self.proc.poll() is not None:
                return
            if self._remaining() <= 0:
                self.timed_out = True
                return
            ready, _, _ = select.select([self._listener], [], [], min(0.05, self._remaining()))
            if ready:
                conn, _ = self._listener.accept()
        # Greeting bytes pending, or EOF because QEMU is going away.
        while True:
            ready, _, _ = select.select([conn], [], [], min(0.05, self._remaining()))
            if ready:
                break
            if self.proc.poll() is not None or self._remaining() <= 0:
                self.timed_out = self._remaining() <= 0 and self.proc.poll() is None
                conn.close()
                return
        qmp = None
        try:
            with _interrupts_deferred():
                qmp = QEMUMonitorProtocol(conn)
            greeting = _negotiate(qmp, min(NEGOTIATE_TIMEOUT, max(0.1, self._remaining())))
            qmp.settimeout(max(1.0, self._remaining()))
        except BaseException as exc:  # QEMU exited or hung while negotiating, or an interrupt
            self._transcript.note("!!", f"QMP negotiation failed: {exc!r}")
            if qmp is not None:
                _close_qmp(qmp)
            try:
                conn.close()
            except OSError:
                pass
            if not isinstance(exc, Exception):
                raise
            return
        self._transcript.note("<-", greeting)
        self.qmp_at = time.monotonic() - self._t0
        self.qmp = qmp
        # A private duplicate: the asyncio transport owns (and closes) conn,
        # and a closed descriptor number may be reused by the time we select.
        self._qmp_fd = os.dup(conn.fileno())

    # ---------------------------------------------------------- control
    def command(self, name: str, **args):
        """A QMP command (logged to qmp.log); returns its ``return`` value."""
        if self.qmp is None:
            raise HarnessError("QMP is not connected (QEMU exited early?)")
        self._transcript.note("->", {"execute": name, "arguments": args} if args else
                              {"execute": name})
        try:
            result = self.qmp.cmd(name, **args)
        except Exception as exc:
            self._transcript.note("<-", f"error: {exc}")
            raise
        self._transcript.note("<-", result)
        self.collect_events()
        return result

    # ----------------------------------------------------------- events
    def collect_events(self, wait: float = 0.0) -> list[dict]:
        """Move the QMP events QEMU sent so far into ``self.events`` and the
        transcript (waiting up to ``wait`` s for the first one); returns
        the new ones."""
        if self.qmp is None:
            return []
        new: list[dict] = []
        pending: float = wait
        while True:
            try:
                got = self.qmp.get_events(wait=float(pending) if pending > 0 else False)
            except (asyncio.TimeoutError, TimeoutError):
                got = []
            except Exception as exc:  # connection gone (QEMU exiting)
                if self._transcript is not None:
                    self._transcript.note("!!", f"QMP event read failed: {exc!r}")
                self._stop_watching_qmp()
                got = []
            if not got:
                break
            for event in got:
                self.events.append(event)
                if self._transcript is not None:
                    self._transcript.note("<-", event)
            new += got
            # The library parses everything it has read in one go, so the
            # rest is already queued; anything still on the socket makes
            # it readable again for the caller's select().  (Waiting here
            # would cost a boot the whole settle time: QEMU sends SHUTDOWN
            # right before it exits.)
            pending = 0.0
        return new

    def _stop_watching_qmp(self) -> None:
        if self._qmp_fd is not None:
            os.close(self._qmp_fd)
            self._qmp_fd = None

    def _qmp_readable(self) -> None:
        """The QMP socket is readable: read events, or notice EOF."""
        assert self._qmp_fd is not None
        try:
            peek = socket.socket(fileno=os.dup(self._qmp_fd))
            try:
                data = peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            finally:
                peek.close()
        except BlockingIOError:
            data = None          # already consumed by the QMP library's buffer
        except OSError as exc:
            data = b"" if exc.errno in (errno.ECONNRESET, errno.EBADF) else None
        if data == b"":          # QEMU closed QMP (it is exiting)
            self._stop_watching_qmp()
            return
        self.collect_events(wait=EVENT_SETTLE)

    def _check_stopped(self) -> bool:
        """After a STOP event: is the VM stopped for good?  Then record the
        run state and quit QEMU (killing it if it does not go).

        Only a STOP triggers ``query-status``: a command sent while a
        running guest leaves through isa-debug-exit (exit() on the vCPU
        thread) can hang QEMU 10.2 for good (seen in about 5 of 100 KVM
        boots), so the runner never probes a running VM."""
        fresh, self._seen = self.events[self._seen:], len(self.events)
        if self.qmp is None or not any(e.get("event") == "STOP" for e in fresh):
            return False
        if any(e.get("event") == "GUEST_PANICKED" and e.get("data", {}).get("action") != "pause"
               for e in self.events):
            return False         # panic action poweroff: QEMU shuts down by itself
        try:
            state = self.command("query-status").get("status")
        except Exception:
            return False         # QEMU is going away by itself; EOF tells
        if state not in STOP_STATES:
            return False
        self.run_state = state
        self._quit()
        return True

    def _quit(self) -> None:
        """Ask QEMU to quit (it then exits with status 0); kill it when QMP
        is gone or QEMU does not go within QUIT_GRACE s."""
        if self.qmp is None:
            self.kill()
        else:
            try:
                self.qmp.settimeout(QUIT_GRACE)   # a wedged QEMU must not cost the deadline
                self.command("quit")
            except Exception:
                pass             # QMP gone (QEMU exiting) or no reply: the wait decides
        try:
            wait_exit(self.proc, QUIT_GRACE)
        except Exception:
            self.kill()
        self._stop_watching_qmp()

    def _drain_console(self, timeout: float = 0.0) -> bool:
        """Read what the console brings within ``timeout`` s (logging it);
        True once QEMU has exited and its console holds nothing more (the
        FIFO never reports end-of-file: the runner keeps a writer open)."""
        assert self.console and self.proc
        end = time.monotonic() + timeout
        while True:
            exited = self.proc.poll() is not None
            try:
                wait = max(0.0, min(0.05, end - time.monotonic()))
                self.console.expect([pexpect.TIMEOUT], timeout=wait)
            except (OSError, pexpect.EOF):
                return True
            if exited and not _readable(self._console_out):
                return True
            if time.monotonic() >= end:
                return False

    def cont(self) -> None:
        if self.paused and self.qmp is not None:
            try:
                self.command("cont")
            except Exception:
                pass  # QEMU may exit right away; the outcome tells

    def expect(self, pattern, timeout: float | None = None) -> int:
        """Wait for console output matching ``pattern`` (pexpect semantics)."""
        assert self.console
        return self.console.expect(pattern, timeout=min(timeout or self._remaining(),
                                                        self._remaining()))

    # ----------------------------------------------------------- finish
    def wait(self) -> Outcome:
        """Read the console and QMP events until QEMU exits, the VM stops
        for good (then QEMU is quit) or the deadline passes."""
        assert self.proc and self.console
        if not self.timed_out:
            self._watch()
        if not self.timed_out:
            try:
                wait_exit(self.proc, max(0.5, self._remaining()))
            except Exception:
                self.timed_out = True
        if self.timed_out:
            self.kill()
        returncode = self.proc.wait()
        return self._finish(returncode)

    def _watch(self) -> None:
        assert self.proc and self.console
        console_fd = self.console.child_fd
        log = self._console_log
        next_note = self._t0 + self.progress_every
        while True:
            # New events, including those that came with a command's reply
            # (e.g. "cont") before the loop started.
            if self._check_stopped():
                self._drain_console(timeout=1.0)   # the rest, up to QEMU's exit
                return
            if self._drain_console():
                return                       # QEMU exited, its console read to the end
            if log is not None and log.to_type:
                self._type(log)
            if log is not None and self._at_marker(log):
                self._drain_console(timeout=MARKER_GRACE)  # the rest of the marker's line
                self._quit()                 # the caller's marker, or its failure line
                self._drain_console(timeout=1.0)
                return
            now = time.monotonic()
            remaining = self._deadline - now
            if remaining <= 0:
                self.timed_out = self.proc.poll() is None
                return
            wake = remaining
            if self.progress is not None:
                if now >= next_note:
                    next_note = now + self.progress_every
                    self.progress(now - self._t0, log.last_line() if log else "")
                wake = min(wake, max(0.0, next_note - now))
            qmp_fd = self._qmp_fd
            fds = [console_fd, self._pidfd] + ([qmp_fd] if qmp_fd is not None else [])
            ready, _, _ = select.select(fds, [], [], wake)
            if qmp_fd is not None and qmp_fd in ready:
                self._qmp_readable()

    def _type(self, log: ConsoleLog) -> None:
        """Type the keys of the prompts that appeared (logged in qmp.log's
        transcript, the run's record of what the harness did)."""
        keys, log.to_type = b"".join(log.to_type), []
        if self._transcript is not None:
            self._transcript.note("->", f"console input {keys!r}")
        try:
            os.write(self._console_in, keys)
        except OSError:
            pass                             # QEMU went away, or is not reading: the outcome tells

    def _at_marker(self, log: ConsoleLog) -> bool:
        """Whether the console says the run is over: the failure pattern
        appeared, or the marker did and the run stops there.  The marker is
        reported to ``progress`` once, when first seen."""
        if log.matched is not None and not self._noted_marker:
            self._noted_marker = True
            if self.progress is not None:
                self.progress(log.matched_at - self._t0, f"marker: {plain(log.matched).strip()}")
        return log.failed_on is not None or (self.stop and log.matched is not None)

    def _console_text(self) -> str:
        data = b""
        if self.console is not None:
            data = (self.console.before or b"")
            if isinstance(self.console.after, bytes):
                data += self.console.after
        try:
            data = (self.run_dir / "console.log").read_bytes()
        except OSError:
            pass
        return data.decode("utf-8", "replace")

    def _finish(self, returncode: int) -> Outcome:
        self._finished = True
        if self._console_log:
            self._console_log.flush()
        console = self._console_text()
        try:
            stderr = (self.run_dir / "stderr.log").read_text("utf-8", "replace")
        except OSError:
            stderr = ""
        log = self._console_log
        matched = log.matched if log else None
        failed_on = log.failed_on if log else None
        status, error = classify(returncode=returncode, timed_out=self.timed_out,
                                 console=console, stderr=stderr, timeout=self.timeout,
                                 run_state=self.run_state,
                                 matched=matched if self.stop else None,
                                 failed_on=failed_on)
        out = Outcome(status=status, exit_code=returncode if returncode >= 0 else None,
                      signal=-returncode if returncode < 0 else None, error=error,
                      console=console, report=GuestReport.parse(console),
                      run_dir=self.run_dir, duration=time.monotonic() - self._t0,
                      argv=self.cmd.argv(), prelaunch=self.prelaunch,
                      run_state=self.run_state, events=list(self.events), matched=matched,
                      matched_at=None if matched is None else log.matched_at - self._t0,
                      failed_on=failed_on, qmp_at=self.qmp_at,
                      cpu_seconds=max(0.0, _children_cpu() - self._children_cpu0),
                      arrivals=[(n, t - self._t0) for n, t in log.arrivals] if log else [])
        if status is Status.HUNG:
            out.error = f"{error}; console tail:\n{out.tail(10)}"
        self.cleanup()
        out.write(self.run_dir / "outcome.json")
        notify(out, True)
        return out

    def kill(self) -> None:
        """SIGKILL the process group and reap it (idempotent)."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            except PermissionError:  # pragma: no cover
                proc.kill()
        try:
            proc.wait(timeout=10)
        except Exception:  # pragma: no cover
            pass

    def cleanup(self) -> None:
        """Close sockets and files, remove the socket directory (idempotent)."""
        if self.proc is not None:
            with _LIVE_LOCK:
                _LIVE.pop(self.proc.pid, None)
        qmp, self.qmp = self.qmp, None
        if qmp is not None:
            _close_qmp(qmp)
        self._stop_watching_qmp()
        if self._listener is not None:
            try:
                self._listener.close()
            except OSError:
                pass
        self._listener = None
        for fd in (self._console_out, self._console_in, self._pidfd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._console_out = self._console_in = self._pidfd = None
        if self.console is not None:
            self.console.child_fd = -1       # closed above; pexpect must not close it again
        if self._console_log is not None:
            self._console_log.close()
            self._console_log = None
        if self._transcript is not None:
            self._transcript.close()
            self._transcript = None
        if self.sock_dir is not None:
            shutil.rmtree(self.sock_dir, ignore_errors=True)
            self.sock_dir = None

    def __enter__(self) -> "QemuRun":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()
        self.cleanup()
        if not self._finished and self.proc is not None:
            # A run driven by hand (``with QemuRun(...)``) ends here, not in
            # _finish: the observers (the timing table) still hear of it.
            notify(RunTimes(time.monotonic() - self._t0, self.qmp_at,
                            max(0.0, _children_cpu() - self._children_cpu0)), True)


@contextlib.contextmanager
def _interrupts_deferred():
    """SIGINT/SIGTERM held back (this thread's signal mask) for a few statements.

    qemu.qmp.legacy's QEMUMonitorProtocol.__init__ sets ``_qmp`` before
    ``_aloop``, and its ``__del__`` reads both: an interrupt between the two
    leaves a half-built object whose collection prints "Exception ignored in
    ... __del__ ... AttributeError: ... no attribute '_aloop'" (seen under
    load by tests/untrusted/test_hygiene.py).  A signal that arrives meanwhile
    stays pending and is delivered when the mask is restored, where the
    caller's ``except`` sees the finished object.
    """
    held = {signal.SIGINT, signal.SIGTERM}
    if threading.current_thread() is not threading.main_thread():
        yield  # Python runs signal handlers on the main thread only
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _negotiate(qmp: QEMUMonitorProtocol, timeout: float):
    """``qmp.connect(negotiate=True)`` with a deadline; returns the greeting.

    qemu.qmp's legacy ``connect`` waits for ever, and QEMU 10.2 can leave a
    negotiation unanswered for good: a guest that ends QEMU (isa-debug-exit)
    while ``qmp_capabilities`` is in flight sends QEMU into qemu_cleanup ->
    monitor_cleanup, which polls for the monitor's dispatcher to finish while
    nothing will finish it (system/runstate.c, monitor/monitor.c; seen in 1
    of 5 back-to-back TCG boots of a guest that exits at once, on a loaded
    machine: the harness, not QEMU, then hung past its deadline).  On time-out
    the caller closes its end: QEMU's monitor sees EOF, the clean-up goes on
    and QEMU exits with the guest's status.  The body is legacy ``connect``'s
    own (qemu.qmp 0.0.x, pinned below 0.1), with a timeout on its ``_sync``.
    """
    client = qmp._qmp
    client.await_greeting = True
    client.negotiate = True
    qmp._sync(client.connect(qmp._address), timeout)
    return qmp._get_greeting()


def _close_qmp(qmp: QEMUMonitorProtocol) -> None:
    """Close a legacy QMP client and leave no asyncio task behind.

    SIGTERM/Ctrl-C arrives as KeyboardInterrupt inside the client's
    ``run_until_complete`` (negotiation, a command, the close itself) and
    leaves that task pending; the next loop run finished it with an error
    nobody retrieved, printed at exit as "Task exception was never
    retrieved" / "Exception ignored ... no running event loop".  So: cancel
    and collect such tasks, close, and collect again, while the loop exists.
    """
    loop = getattr(qmp, "_aloop", None)  # qemu.qmp.legacy's private loop
    usable = loop is not None and not loop.is_closed() and not loop.is_running()
    if usable:
        _finish_tasks(loop)
    try:
        qmp.close()
    except BaseException:  # an interrupt mid-close, or QEMU already gone
        pass
    if usable:
        _finish_tasks(loop)


def _finish_tasks(loop: asyncio.AbstractEventLoop) -> None:
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        try:  # return_exceptions: every outcome is retrieved, nothing is logged later
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        except BaseException:
            pass


Prelaunch = Callable[[QemuRun], None]


def console_fifos(base: Path) -> tuple[int, int]:
    """COM1's transport: FIFOs ``<base>.out`` (QEMU writes) and ``<base>.in``
    (QEMU reads), which QEMU's pipe chardev opens by path.  Our ends:
    ``(output read end, input write end)``, both O_RDWR so that neither
    blocks on open nor sees end-of-file while QEMU is not there yet.

    Not a socket pair, as before: through a unix socket QEMU's 16550 lost
    characters whenever the reader came back late -- a reader taking a bite
    every 50 ms (a pytest worker on a busy machine) found 15-22 console lines
    of a Linux boot with a character or two missing ("Kernel ommand line:"),
    the same boots through these FIFOs none (tests/runner/test_console_pipe.py).
    QEMU's serial model sends one byte per write and, when a write does not
    go through, retries it from a "writable" watch at most MAX_XMIT_RETRY
    times while the guest keeps filling its 16-byte FIFO, whose oldest byte
    a full push drops (hw/char/serial.c serial_xmit, serial_ioport_write).
    A pipe of CONSOLE_PIPE_BYTES (up to /proc/sys/fs/pipe-max-size) takes
    every byte of a boot's console at once.
    """
    os.mkfifo(f"{base}.out", 0o600)
    os.mkfifo(f"{base}.in", 0o600)
    out_fd = os.open(f"{base}.out", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        in_fd = os.open(f"{base}.in", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        os.close(out_fd)
        raise
    for size in (CONSOLE_PIPE_BYTES, CONSOLE_PIPE_BYTES // 4):
        try:
            fcntl.fcntl(out_fd, fcntl.F_SETPIPE_SZ, size)
            break
        except OSError:                      # above pipe-max-size for this user
            continue
    return out_fd, in_fd


def _readable(fd: int | None) -> bool:
    if fd is None:
        return False
    ready, _, _ = select.select([fd], [], [], 0)
    return bool(ready)


def _children_cpu() -> float:
    """User + system CPU seconds of this process's reaped children: around
    one run (a test process runs one QEMU at a time) its difference is that
    QEMU's CPU time -- a figure the machine's load does not inflate, unlike
    wall time."""
    import resource
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def qemu_env(run_dir: Path) -> dict[str, str]:
    """QEMU's environment: the harness's, with TMPDIR in the run directory.

    QEMU makes temporary files there (block.c create_tmp_file: g_get_tmp_dir(),
    /var/tmp in place of /tmp), e.g. the overlay of a ``snapshot=on`` disk;
    a QEMU killed before it deleted one leaves it with the run's logs, not in
    a directory shared with everything else.
    """
    return {**os.environ, "TMPDIR": str(Path(run_dir).resolve())}


def run(cmd: QemuCommand, run_dir: Path, timeout: float = DEFAULT_TIMEOUT,
        prelaunch: Prelaunch | None = None, until: ConsolePattern | None = None, *,
        fail: ConsolePattern | None = None, stop: bool = True,
        progress: Progress | None = None, progress_every: float = 10.0,
        answers: tuple[tuple[ConsolePattern, bytes], ...] = ()) -> Outcome:
    """Start QEMU (paused when there is a ``prelaunch(run)`` hook for QMP
    queries), continue, and return the classified :class:`Outcome`.  The
    process is reaped and the sockets removed whatever happens (timeout,
    exception, Ctrl-C).

    Runs that can stop the VM for good also start paused: a panic device
    (``cmd.pvpanic``) or a confidential guest (GHCB termination on
    SEV-ES/SNP hardware).  QEMU sends no events before QMP capabilities
    negotiation, and an unpaused guest runs while that happens, so an early
    STOP would go unheard and the run end HUNG.

    The console (harness.qemu.console) can end a run before the guest's
    exit or the deadline -- real firmware never exits by itself:

    * ``until``: a console marker (regex).  ``Outcome.matched`` is the text
      it matched and ``Outcome.matched_at`` the seconds from QEMU's start.
      With ``stop`` (the default) the run ends there: QEMU is quit over QMP
      (exit status 0; killed when it does not go) and the status is BOOTED
      whatever the exit; with ``stop=False`` the run goes on to QEMU's own
      exit (a Linux guest that powers off), classified as usual;
    * ``fail``: a console pattern that ends the run at once, the same way
      (``Outcome.failed_on``, and the error names it);
    * ``answers``: ``(prompt, keys)``: the keys are typed on the console
      once, when the prompt first appears (a firmware countdown cut short,
      as a user at the console would; harness.guests.firmware.ANSWERS);
    * ``progress(seconds, line)``: called every ``progress_every`` s with
      the console's last line, and once with ``marker: <text>`` at the
      marker (a TCG boot of Linux through OVMF takes a minute).

    A VM stopped for good ends the run too (STOPPED, see the module
    docstring)."""
    paused = prelaunch is not None or cmd.pvpanic or cmd.confidential is not None
    qr = QemuRun(cmd, run_dir, timeout, paused=paused, until=until, fail=fail, stop=stop,
                 progress=progress, progress_every=progress_every, answers=answers)
    try:
        qr.start()
        if prelaunch is not None and qr.qmp is not None:
            prelaunch(qr)   # (no QMP: QEMU already exited; the outcome says why)
        qr.cont()
        return qr.wait()
    finally:
        qr.kill()
        qr.cleanup()
