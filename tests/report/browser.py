"""Run Debian's Chromium headless on a local page (DOM dump or screenshot).

Each run gets a fresh profile directory and its own process group, which is
killed on timeout so that no browser process outlives a test.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run")


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def run(page: Path, *extra: str, timeout: float = 90) -> subprocess.CompletedProcess:
    binary = chromium()
    assert binary, "no chromium"
    with tempfile.TemporaryDirectory(prefix="igvmt-chromium-") as profile:
        cmd = [binary, *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        finally:
            try:  # helpers (zygote, GPU process) may linger after the main process
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def dump_dom(page: Path) -> str:
    return run(page, "--dump-dom").stdout


def screenshot(page: Path, png: Path, size: tuple[int, int] = (1280, 1600)) -> Path:
    run(page, f"--screenshot={png}", f"--window-size={size[0]},{size[1]}")
    return png
