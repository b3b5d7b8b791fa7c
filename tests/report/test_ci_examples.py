"""The CI examples stay in step with the harness: their files parse, every
option they pass exists, and both engines' files name the same runner tags.
(tests/ci/ executes them: test_gitlab_pipeline.py, test_github_workflow.py,
test_matrix_nightly.py.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.cli import build_parser
from harness.report import matrix_run

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "ci-examples"
YAMLS = [EXAMPLES / "github-actions" / "igvm-nightly.yml", EXAMPLES / "gitlab-ci" / "gitlab-ci.yml"]


def test_matrix_example_loads():
    spec = matrix_run.load_spec(EXAMPLES / "matrix" / "nightly.toml")
    assert len(matrix_run.expand(spec)) == 1 * 4 * 2


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.parent.name)
def test_yaml_parses(path):
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    if path.parent.name == "github-actions":
        assert set(doc["jobs"]) == {"cell", "dashboard"}
        assert doc["jobs"]["dashboard"]["needs"] == "cell"
    else:
        assert doc["dashboard"]["when"] == "always"


def _known_options() -> set[str]:
    opts: set[str] = set()
    parser = build_parser()
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            opts.update(o for o in action.option_strings if o.startswith("--"))
            if hasattr(action, "choices") and isinstance(action.choices, dict):
                stack.extend(action.choices.values())
    help_text = subprocess.run([sys.executable, "-m", "pytest",
                                *matrix_run.collector_args(), "--help"], cwd=REPO,
                               capture_output=True, text=True, timeout=120).stdout
    opts.update(re.findall(r"(--[a-z][a-z0-9-]+)", help_text))
    return opts


def test_every_option_in_the_examples_exists():
    known = _known_options()
    used = set()
    for path in YAMLS:
        used.update(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]+)", path.read_text()))
    used -= {"--header", "--location"}  # curl's, in the GitLab history download
    assert used <= known, sorted(used - known)
    assert {"--igvm-report-dir", "--platform", "--accel", "--history", "--output"} <= used


def test_both_engines_name_the_same_runner_tags():
    """The README tells a lab to register runners with these tags; the
    GitLab jobs' tags, GitLab's default RUNNER_TAGS and the GitHub labels agree."""
    gitlab = yaml.safe_load(YAMLS[1].read_text())
    github = yaml.safe_load(YAMLS[0].read_text())
    job_tags = {t for job in gitlab.values() if isinstance(job, dict)
                for t in job.get("tags", [])}
    labels = {row["runner"] for row in github["jobs"]["cell"]["strategy"]["matrix"]["include"]}
    assert job_tags == labels == set(gitlab["variables"]["RUNNER_TAGS"].split())
    readme = (EXAMPLES / "README.md").read_text()
    assert all(f"`{tag}`" in readme for tag in job_tags)
