"""Ctrl-C, SIGTERM and a SIGKILLed harness leave no QEMU and no socket.

Each case runs a real harness process (a pytest session or a small script)
that boots a guest which never exits, interrupts it from outside, and then
looks for survivors: a QEMU whose command line carries this test's unique
token, and socket directories under the private socket base.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from harness.guests.protocol import ConfigPage
from harness.qemu.runner import sweep_stale_socket_dirs

pytestmark = pytest.mark.slow


def _sigint_default() -> None:
    """In the child: SIGINT back to its default, so that Python raises
    KeyboardInterrupt on it.  A test command started as a shell's background
    job (``cmd &`` without job control: nohup, some CI launchers) inherits
    SIGINT ignored, and an ignored signal stays ignored across exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _pids_with(token: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if token.encode() in cmd and b"qemu" in cmd:
            pids.append(int(entry))
    return pids


def _wait_for(pred, timeout=20.0, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(step)
    return pred()


@pytest.fixture(params=["under-test", "stock"])
def qemu_choice(request, any_qemu):
    """Both reaping paths: a QEMU with -run-with exit-with-parent and one
    without (PR_SET_PDEATHSIG from the preexec hook): Debian's stock QEMU,
    7.2 on bookworm (-run-with exit-with-parent arrived in 9.1)."""
    from harness.qemu.runner import supports_exit_with_parent
    if request.param == "under-test":
        return any_qemu
    stock = request.getfixturevalue("stock_qemu")
    assert not supports_exit_with_parent(stock), f"{stock} has exit-with-parent: not stock"
    return stock


@pytest.fixture
def hanging(tmp_path, qemu_choice, reset_rom):
    """Files for a guest that reports and then halts forever (no exit port)."""
    any_qemu = qemu_choice
    token = tmp_path / "hang-config.bin"
    token.write_bytes(ConfigPage(exit_port=0x80).pack())
    sockbase = Path(tempfile.mkdtemp(prefix="igvmt-test-", dir="/tmp"))  # short: AF_UNIX
    env = dict(os.environ, IGVM_HARNESS_SOCKDIR=str(sockbase))
    yield {"qemu": any_qemu, "rom": str(reset_rom), "config": str(token), "env": env,
           "sockbase": sockbase}
    shutil.rmtree(sockbase, ignore_errors=True)


SCRIPT = """
import sys
from pathlib import Path
from harness.qemu.cmdline import QemuCommand
from harness.qemu.runner import run
cmd = QemuCommand({qemu!r}, bios={rom!r},
                  extra=["-device", "loader,file={config},addr=0x9000,force-raw=on"])
run(cmd, Path({rundir!r}), timeout=120{watch})
"""
#: The same run watched for a console marker, a failure line and progress
#: (the firmware suite's boots): interrupted while it waits for the marker.
WATCHED = (', until="never printed", fail="nor this", progress=lambda t, line: None,'
           ' progress_every=0.2')


def _test_file(tmp_path: Path, h: dict, watch: str = "") -> Path:
    body = "def test_hangs():\n" + textwrap.indent(
        SCRIPT.format(rundir=str(tmp_path / "inner-run"), watch=watch, **h), "    ")
    path = tmp_path / "test_inner_hang.py"
    path.write_text(body)
    return path


@pytest.mark.parametrize("sig,watch", [(signal.SIGINT, ""), (signal.SIGTERM, ""),
                                       (signal.SIGINT, WATCHED)], ids=["int", "term", "int-until"])
def test_interrupted_pytest_leaves_nothing(tmp_path, hanging, sig, watch):
    test_file = _test_file(tmp_path, hanging, watch)
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "--rootdir", str(tmp_path), str(test_file)],
                            cwd=tmp_path, env=hanging["env"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_sigint_default)
    try:
        assert _wait_for(lambda: _pids_with(hanging["config"])), "QEMU never started"
        assert _wait_for(lambda: "IGVMT done" in _read(tmp_path / "inner-run" / "console.log"))
        assert list(hanging["sockbase"].iterdir()), "no socket directory while running"
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0, out
    assert _wait_for(lambda: not _pids_with(hanging["config"]), timeout=5), "orphan QEMU"
    assert list(hanging["sockbase"].iterdir()) == []


def test_sigkilled_harness_takes_qemu_along(tmp_path, hanging):
    script = tmp_path / "harness_script.py"
    script.write_text(SCRIPT.format(rundir=str(tmp_path / "inner-run"), watch="", **hanging))
    proc = subprocess.Popen([sys.executable, str(script)], env=hanging["env"])
    try:
        assert _wait_for(lambda: _pids_with(hanging["config"])), "QEMU never started"
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # PR_SET_PDEATHSIG: the kernel kills QEMU with its parent.
    assert _wait_for(lambda: not _pids_with(hanging["config"]), timeout=5), "orphan QEMU"
    # The socket directory of the dead harness is swept by the next run.
    stale = list(hanging["sockbase"].iterdir())
    assert len(stale) == 1
    assert sweep_stale_socket_dirs(hanging["sockbase"]) == 1
    assert list(hanging["sockbase"].iterdir()) == []


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _ppid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError("no PPid")


def test_killed_xdist_worker_leaves_nothing(tmp_path, hanging):
    """SIGKILL the pytest-xdist worker that owns a running QEMU: QEMU dies
    with it, and the replacement worker's next boot sweeps the dead
    worker's socket directory."""
    pytest.importorskip("xdist")
    boots = (f"from pathlib import Path\nfrom harness.qemu.cmdline import QemuCommand\n"
             f"from harness.qemu.runner import run\n"
             f"out = run(QemuCommand({hanging['qemu']!r}, bios={hanging['rom']!r}),"
             f" Path({str(tmp_path / 'inner-run-b')!r}), timeout=20)\n"
             f"assert out.status.value == 'BOOTED'\n")
    body = ("def test_a_hangs():\n"
            + textwrap.indent(SCRIPT.format(rundir=str(tmp_path / "inner-run"), watch="", **hanging), "    ")
            + "\n\ndef test_b_boots():\n" + textwrap.indent(boots, "    "))
    test_file = tmp_path / "test_inner_worker.py"
    test_file.write_text(body)
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "-n", "1", "--rootdir", str(tmp_path), str(test_file)],
                            cwd=tmp_path, env=hanging["env"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_sigint_default)
    try:
        qemus = _wait_for(lambda: _pids_with(hanging["config"]))
        assert qemus, "QEMU never started"
        worker = _ppid(qemus[0])
        assert worker != proc.pid
        os.kill(worker, signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert _wait_for(lambda: not _pids_with(hanging["config"]), timeout=5), "orphan QEMU"
    assert b"1 passed" in out, out.decode()[-2000:]       # the second test ran after the crash
    assert list(hanging["sockbase"].iterdir()) == []
