"""What the CI-engine tests (tests/ci/test_gitlab_pipeline.py and
test_github_workflow.py) need, found or named.

Every piece is installed by set-up (system packages, ci-examples/tools), so
a missing one FAILS the test naming it: a skip would hide a missing install
step in .ci/run.
"""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS_INSTALL = REPO / "ci-examples" / "tools" / "install.sh"


def program(name: str, why: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH: {why} (./setup.sh installs it)", pytrace=False)
    return path


def ci_tool(name: str) -> str:
    """A tool pinned in ci-examples/tools, from the harness cache."""
    program("node", "the pinned CI tools run on Node.js")
    proc = subprocess.run([str(TOOLS_INSTALL), "--check"], capture_output=True, text=True,
                          timeout=60)
    if proc.returncode != 0:
        pytest.fail(f"{name}: {proc.stderr.strip() or 'ci-examples/tools not installed'}",
                    pytrace=False)
    path = Path(proc.stdout.strip()) / "node_modules" / ".bin" / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{name}: not in {path.parent} (run ci-examples/tools/install.sh)",
                    pytrace=False)
    return str(path)


def clean_env() -> dict[str, str]:
    """This process's environment less what would steer a CI engine
    (gitlab-ci-local reads ``GCL_*``)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GCL_")}


def checkout(dest: Path) -> Path:
    """A git repository holding the project as it is now (tracked files and
    new ones not ignored, as a CI engine checks out a pushed commit); CI
    engines copy a job's checkout from git, never from the work tree."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], capture_output=True, check=True).stdout
    dest.mkdir(parents=True)
    for rel in filter(None, listed.decode().split("\0")):
        src = REPO / rel
        if not src.is_file():  # deleted in the work tree, not yet in git
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    git = ["git", "-C", str(dest), "-c", "user.name=igvm-harness tests",
           "-c", "user.email=tests@igvm-harness.invalid"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "pipeline test"]):
        subprocess.run(git + args, check=True, capture_output=True)
    return dest


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a CI engine in its own process group, killed whole on timeout or
    Ctrl-C: its jobs' shells, pytest and QEMU must not outlive the test."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


class ArtifactServer:
    """A loopback stand-in for GitLab's job-artifacts API (the only GitLab
    service the pipeline calls): serves ``body`` at ``path`` or 404, and
    records every request's path and JOB-TOKEN header.  Named as what it is:
    there is no GitLab server here."""

    def __init__(self) -> None:
        self.body: bytes | None = None
        self.path: str | None = None
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests.append((self.path, self.headers.get("JOB-TOKEN")))
                if server.body is not None and self.path == server.path:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(server.body)))
                    self.end_headers()
                    self.wfile.write(server.body)
                else:
                    self.send_error(404, "no such artifact")

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)
