"""The GitHub Actions example (ci-examples/github-actions/igvm-nightly.yml):
checked by a validator from a registry, and its commands executed.

action-validator (pinned in ci-examples/tools) checks the file against the
workflow schema.  There is no Actions runner here, so the test runs each job
the way a self-hosted runner would run its ``run:`` steps -- bash, the job's
and step's ``env``, ``${{ }}`` expressions evaluated, ``if:`` conditions
honoured -- for the matrix rows of the ``kvm`` label, then the dashboard
job.  The ``uses:`` steps are GitHub services and are emulated, named:
checkout is a copy of the project, upload/download-artifact copy files
into ``results/<artifact name>/``, the Actions cache is empty (a first
run).  Set-up is the test's own .venv (.ci/run ran ./setup.sh).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from harness.report import schema

from . import engines

#: One pipeline run serves every test of this module: on one xdist worker,
#: scheduled early (its cells take about 15 s on an idle core).
pytestmark = [pytest.mark.xdist_group("github-workflow"), pytest.mark.weight(15)]

WORKFLOW = engines.REPO / "ci-examples" / "github-actions" / "igvm-nightly.yml"
LABEL = "kvm"
SUITE_ARGS = "-n 0 suites/matrix -k page-normal"
#: Steps whose command is set-up (replaced by the test's .venv) and the
#: actions the test emulates; any other ``uses:`` fails the test.
SETUP_COMMANDS = ("./setup.sh", "python3 -m venv .venv && .venv/bin/pip install -q .")
EMULATED = ("actions/checkout@", "actions/upload-artifact@", "actions/download-artifact@",
            "actions/cache/restore@", "actions/cache/save@")


def _load() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def test_validator_accepts_the_workflow_and_refuses_a_broken_one(tmp_path):
    validator = engines.ci_tool("action-validator")
    ok = subprocess.run([validator, str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on:", "runs_on:", 1))
    bad = subprocess.run([validator, str(broken)], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "runs_on" in bad.stdout + bad.stderr


def test_no_registered_plugin_is_loaded_twice():
    """``-p harness.report.pytest_collect`` beside the installed pytest11
    entry point stops pytest ('Plugin already registered'): the example had it."""
    assert "-p harness.report.pytest_collect" not in WORKFLOW.read_text()


# ------------------------------------------------------------- a tiny runner
_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def _evaluate(expr: str, ctx: dict) -> object:
    """A GitHub expression over the contexts used in the file: ``matrix``,
    ``env``, ``inputs``, ``github``; ``&&``, ``||``, ``==``, ``!=``, string
    literals and ``always()`` (Python has the same semantics for these)."""
    py = expr.replace("&&", " and ").replace("||", " or ")
    py = re.sub(r"!(?!=)", " not ", py)
    names = {k: SimpleNamespace(**v) for k, v in ctx.items()}
    return eval(py, {"__builtins__": {}}, {**names, "always": lambda: True})  # noqa: S307


def _expand(text: str, ctx: dict) -> str:
    return _EXPR.sub(lambda m: str(_evaluate(m.group(1), ctx)), text)


def _condition(step: dict, ctx: dict) -> bool:
    cond = step.get("if")
    if cond is None:
        return True
    cond = cond.strip()
    m = _EXPR.fullmatch(cond)
    return bool(_evaluate(m.group(1) if m else cond, ctx))


def _search_root(line: str) -> str:
    """A path line's directory before its first wildcard (the line itself for
    a directory)."""
    parts = line.rstrip("/").split("/")
    fixed = [p for p in parts[:next((i for i, p in enumerate(parts) if "*" in p), len(parts))]]
    return "/".join(fixed)


def _upload(workdir: Path, results: Path, step: dict, ctx: dict) -> None:
    """actions/upload-artifact: the files the path lines match, relative to
    the lines' least common ancestor, into results/<name>/."""
    name = _expand(step["with"]["name"], ctx)
    lines = [_expand(line.strip(), ctx) for line in step["with"]["path"].splitlines() if line.strip()]
    files = set()
    for line in lines:
        pattern = line.rstrip("/") + "/**/*" if line.endswith("/") else line
        files.update(p for p in workdir.glob(pattern) if p.is_file())
    assert files, f"upload {name}: nothing matched {lines}"
    base = workdir / os.path.commonpath([_search_root(line) for line in lines])
    for f in sorted(files):
        dest = results / name / f.relative_to(base)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)


def _run_job(job: dict, workdir: Path, ctx: dict, results: Path, log: list[str]) -> int:
    env = dict(engines.clean_env())
    ctx = {**ctx, "env": {}}
    for key, value in (job.get("env") or {}).items():
        ctx["env"][key] = env[key] = _expand(str(value), ctx)
    status = 0
    for step in job["steps"]:
        label = step.get("name") or step.get("uses") or step["run"][:40]
        if not _condition(step, {**ctx, "job": {"status": status}}) or (status and "if" not in step):
            log.append(f"skipped: {label}")
            continue
        if "uses" in step:
            uses = step["uses"]
            assert uses.startswith(EMULATED), f"no emulation for {uses}"
            if uses.startswith("actions/upload-artifact@"):
                _upload(workdir, results, step, ctx)
            elif uses.startswith("actions/download-artifact@"):
                pattern = step["with"]["pattern"]
                target = workdir / step["with"]["path"]
                for art in sorted(results.iterdir()):
                    if fnmatch.fnmatch(art.name, pattern):
                        shutil.copytree(art, target / art.name, dirs_exist_ok=True)
            log.append(f"emulated: {uses}")
            continue
        script = _expand(step["run"], ctx)
        if script.strip() in SETUP_COMMANDS:
            script = f"ln -sfn {sys.prefix} .venv"
        proc = engines.run(["bash", "-e", "-c", script], workdir,
                           {**env, **{k: _expand(str(v), ctx) for k, v in (step.get("env") or {}).items()}})
        log.append(f"ran ({proc.returncode}): {label}\n{proc.stdout[-2000:]}")
        status = status or proc.returncode
    return status


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory) -> SimpleNamespace:
    doc = _load()
    root = tmp_path_factory.mktemp("actions")
    project = engines.checkout(root / "project")
    results, log = root / "artifacts", []
    results.mkdir()
    inputs = {"vendor_image": "", "suite_args": SUITE_ARGS}
    cells = [row for row in doc["jobs"]["cell"]["strategy"]["matrix"]["include"]
             if row["runner"] == LABEL]
    statuses = {}
    for row in cells:
        workdir = root / f"cell-{row['platform']}-{row['accel']}"
        shutil.copytree(project, workdir, symlinks=True)
        statuses[(row["platform"], row["accel"])] = _run_job(
            doc["jobs"]["cell"], workdir, {"matrix": row, "inputs": inputs,
                                           "github": {"run_id": "1"}}, results, log)
    dash_dir = root / "dashboard"
    shutil.copytree(project, dash_dir, symlinks=True)
    dash_status = _run_job(doc["jobs"]["dashboard"], dash_dir,
                           {"inputs": inputs, "github": {"run_id": "1"}}, results, log)
    return SimpleNamespace(cells=cells, statuses=statuses, dash_status=dash_status,
                           dash_dir=dash_dir, results=results, log=log)


def test_cell_steps_run_and_upload_results(workflow_run):
    assert workflow_run.cells, f"no matrix row for runner label {LABEL}"
    log = "\n".join(workflow_run.log)
    assert all(s == 0 for s in workflow_run.statuses.values()), log[-4000:]
    assert "skipped: Certify the vendor image" in log  # no vendor_image input
    for row in workflow_run.cells:
        art = workflow_run.results / f"results-{row['runner']}-{row['platform']}-{row['accel']}"
        docs = [schema.load(p) for p in art.glob("suite-*.json")]
        assert len(docs) == 1, (row, sorted(p.name for p in art.iterdir()))
        assert docs[0]["subject"]["platform"] == row["platform"]
        assert docs[0]["environment"]["accel"] == row["accel"]
        assert (art / "pytest-junit.xml").is_file() and list(art.glob("suite-*.html"))
        assert list((art / "matrix").glob("matrix-*.json"))


def test_dashboard_job_merges_every_cell(workflow_run):
    log = "\n".join(workflow_run.log)
    assert workflow_run.dash_status == 0, log[-4000:]
    assert "history: no previous dashboard" in log
    assert f"lost-cells: every cell of {len(workflow_run.cells)} wrote results" in log
    dash = schema.load(workflow_run.dash_dir / "history" / "dashboard.json")
    assert {(c["platform"], c["accel"]) for c in dash["columns"]} == {
        (r["platform"], r["accel"]) for r in workflow_run.cells}
    assert len(dash["runs"]) == len(workflow_run.cells)
    assert (workflow_run.dash_dir / "history" / "dashboard.html").is_file()
    json.dumps(dash)  # plain JSON, as the cache keeps it
