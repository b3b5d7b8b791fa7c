"""Stopping a long ``igvm-harness certify`` with SIGINT (Ctrl-C) or SIGTERM
(CI cancel, ``kill``): one line, exit status 128 + signal number (the shell
convention), and nothing left -- no QEMU, no socket directory in /tmp."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import PlatformType
from harness.qemu.pids import children, pid_alive  # a zombie counts as gone






@pytest.mark.parametrize("signum, word", [(signal.SIGINT, "interrupted"),
                                          (signal.SIGTERM, "terminated")])
def test_signal_during_a_boot_leaves_nothing(tmp_path, signum, word, qemu_binary):
    qemu = qemu_binary
    b = IgvmBuilder()
    b.platform(PlatformType.NATIVE)
    b.pages(0xFFFFF000, b"\xf4" * 4096)  # HLT at the reset vector: runs until the deadline
    image = tmp_path / "hlt.igvm"
    image.write_bytes(b.build())
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "certify", str(image), "--qemu", qemu,
         "--platform", "native", "--accel", "tcg", "--boot-timeout", "60", "--output",
         str(tmp_path / "out"), "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a shell's background job would inherit SIGINT ignored; a terminal's would not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not children(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        kids = children(proc.pid)
        assert kids, "QEMU never started"
        time.sleep(0.5)  # past QMP negotiation: the guest is running
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signum, err
    assert err.splitlines()[-1] == f"igvm-harness: {word}" and "Traceback" not in err
    time.sleep(0.2)
    assert not [k for k in kids if pid_alive(k)], "QEMU outlived the harness"
    left = [n for n in os.listdir(tempfile.gettempdir()) if f"-{proc.pid}-" in n]
    assert not left, left
