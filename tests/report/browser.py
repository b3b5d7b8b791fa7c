"""Run Debian's Chromium headless on a local page (DOM dump or screenshot).

Each run gets a fresh profile directory and its own process group, which is
killed on timeout so that no browser process outlives a test.
"""

from __future__ import annotations

import html.parser
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


class _Table(html.parser.HTMLParser):
    """Rows of the table with the given id, as lists of cell texts."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id, self.depth, self.rows, self.cell = table_id, 0, [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and (self.depth or attrs.get("id") == self.table_id):
            self.depth += 1
        elif self.depth == 1 and tag == "tr":
            self.rows.append([])
        elif self.depth == 1 and tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag == "table" and self.depth:
            self.depth -= 1
        elif self.depth == 1 and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join(" ".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def table(dom: str, table_id: str) -> list[list[str]]:
    parser = _Table(table_id)
    parser.feed(dom)
    return parser.rows
