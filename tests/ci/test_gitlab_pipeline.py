"""The GitLab example pipeline (ci-examples/gitlab-ci/gitlab-ci.yml), executed.

gitlab-ci-local (pinned in ci-examples/tools) runs the file as a GitLab
shell runner would: the workflow rules, ``parallel:matrix``, job ``rules``
on ``$RUNNER_TAGS``, ``needs`` with artifacts, ``when: always``, each job in
its own copy of the checkout (``--shell-isolation``), artifacts exported per
job and imported by the job that needs them.  The cells run the real suite
against the real QEMU-under-test with a short selection (``SUITE_ARGS``) and
two deliberately broken cells (tests/ci/broken_cell.py): one whose check
fails (``$IGVM_BROKEN_CELL``), one whose pytest is killed before it writes
any results (``$IGVM_DEAD_CELL``).

What is not GitLab here, named: the engine is an emulation (gitlab-ci-local
does not read ``reports: junit``; the test applies the file's glob to each
job's artifacts and reads the JUnit as GitLab's parser does: testcase
elements and their failure / error / skipped children); the job-artifacts API
that the dashboard's history step calls is a loopback stand-in
(engines.ArtifactServer); ``HARNESS_SETUP`` links the test's own set-up
.venv instead of running ./setup.sh in every job (.ci/run ran set-up).  Only
the kvm-tagged jobs run (``RUNNER_TAGS=kvm``): the SEV-host jobs are left out
by their rules, and the test checks which and why.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from harness.report import schema

from ..report import browser
from . import engines

#: One pipeline run serves every test of this module: on one xdist worker,
#: scheduled early (its cells take about 40 s on an idle core).
pytestmark = [pytest.mark.xdist_group("gitlab-pipeline"), pytest.mark.weight(40)]

PIPELINE = "ci-examples/gitlab-ci/gitlab-ci.yml"
RUNNER_TAGS = "kvm"
#: A few fast cells of the conformance matrix on every platform, one
#: mutated real-OVMF wrap per firmware build (all four platforms on the SEV
#: build: a native cell must deselect the others), and the broken cell;
#: serial (``-n 0``): a dozen checks gain nothing from workers, and the four
#: cells already share the two cores.
SUITE_ARGS = ("-n 0 suites/matrix suites/firmware/test_malformed.py tests/ci/broken_cell.py "
              "-k 'page-normal or vp-context-ap or bad-magic or deliberately_broken'")
BROKEN = ("sev", "tcg")
DEAD = ("sev-es", "tcg")
TOKEN = "pipeline-test-token"
#: pytest JUnit outcome of each results verdict (pytest's junitxml: skips,
#: xfails and hardware boundaries are <skipped>, failures <failure>).
JUNIT_OF = {"pass": "passed", "fail": "failure", "error": "error", "skip": "skipped",
            "boundary": "skipped", "xfail": "skipped", "xpass": "passed"}


@dataclass
class Run:
    work: Path
    proc: subprocess.CompletedProcess
    listing: list[dict]
    expanded: dict
    server: engines.ArtifactServer
    first_night: dict  # the dashboard job's dashboard.json after this pipeline

    @property
    def state(self) -> Path:
        return self.work / ".gitlab-ci-local"


def _gcl(gcl: str, work: Path, server_url: str, *extra: str):
    cmd = [gcl, "--file", PIPELINE, "--shell-isolation", "--color=false",
           "--home", str(work.parent / "gcl-home"),
           "--ignore-predefined-vars", "CI_PIPELINE_SOURCE,CI_SERVER_URL,CI_JOB_TOKEN",
           "--variable", "CI_PIPELINE_SOURCE=schedule",
           "--variable", f"RUNNER_TAGS={RUNNER_TAGS}",
           "--variable", f"HARNESS_SETUP=ln -sfn {sys.prefix} .venv",
           "--variable", f"SUITE_ARGS={SUITE_ARGS}",
           "--variable", f"IGVM_BROKEN_CELL={'/'.join(BROKEN)}",
           "--variable", f"IGVM_DEAD_CELL={'/'.join(DEAD)}",
           "--variable", f"CI_SERVER_URL={server_url}",
           "--variable", f"CI_JOB_TOKEN={TOKEN}", *extra]
    return engines.run(cmd, work, engines.clean_env())


@pytest.fixture(scope="module")
def gcl() -> str:
    engines.program("rsync", "gitlab-ci-local copies checkouts and artifacts with it")
    engines.program("git", "gitlab-ci-local reads the checkout with it")
    return engines.ci_tool("gitlab-ci-local")


@pytest.fixture(scope="module")
def pipeline(gcl, tmp_path_factory) -> Run:
    work = engines.checkout(tmp_path_factory.mktemp("gitlab") / "repo")
    server = engines.ArtifactServer()  # no previous pipeline: every request is a 404
    try:
        listing = _gcl(gcl, work, server.url, "--list-json")
        assert listing.returncode == 0, listing.stdout
        jobs = json.loads(listing.stdout[listing.stdout.index("\n[") + 1:])
        preview = _gcl(gcl, work, server.url, "--preview")
        assert preview.returncode == 0, preview.stdout
        expanded = yaml.safe_load(preview.stdout[preview.stdout.index("---"):])
        proc = _gcl(gcl, work, server.url)
        run = Run(work, proc, jobs, expanded, server, {})
        if not list(run.state.glob("artifacts/*/dashboard/dashboard.json")):
            pytest.fail("the pipeline left no dashboard/dashboard.json:\n"
                        + proc.stdout[-4000:], pytrace=False)
        run.first_night = _dashboard(run)
        yield run
    finally:
        server.close()


def _matrix_values(name: str) -> tuple[str, str] | None:
    """``native: [sev,tcg]`` -> (sev, tcg): GitLab's name of a matrix job."""
    m = re.fullmatch(r"[\w-]+: \[([\w-]+),([\w-]+)\]", name)
    return (m.group(1), m.group(2)) if m else None


def _expected_cells(run: Run) -> set[tuple[str, str]]:
    """(platform, accel) of every kvm-tagged cell, from the file's own matrix."""
    cells = set()
    for job in run.expanded.values():
        if not isinstance(job, dict) or job.get("stage") != "cells" or job.get("tags") != ["kvm"]:
            continue
        for entry in job["parallel"]["matrix"]:
            for platform in entry["PLATFORM"]:
                for accel in entry["ACCEL"]:
                    cells.add((platform, accel))
    return cells


def _markers(run: Run) -> dict[tuple[str, str], Path]:
    """Each cell job's exported artifacts: reports/<job slug>/ with its marker."""
    found = {}
    for path in run.state.glob("artifacts/*/reports/*/cell.txt"):
        marker = dict(line.split("=", 1) for line in path.read_text().splitlines())
        key = (marker["platform"], marker["accel"])
        assert key not in found, f"two cells wrote {key}"
        found[key] = path.parent
    return found


def _cell_dirs(run: Run) -> dict[tuple[str, str], Path]:
    """The cells that wrote results: reports/<job slug>/ with one suite JSON."""
    found = {}
    for doc_path in run.state.glob("artifacts/*/reports/*/suite-*.json"):
        doc = schema.load(doc_path)
        key = (doc["subject"]["platform"], doc["environment"]["accel"])
        assert key not in found, f"two cells wrote {key}"
        found[key] = doc_path.parent
    return found


def _dashboard(run: Run) -> dict:
    paths = list(run.state.glob("artifacts/*/dashboard/dashboard.json"))
    assert len(paths) == 1, paths
    return schema.load(paths[0])


def test_only_jobs_whose_runner_tags_exist_ran(pipeline):
    """RUNNER_TAGS=kvm: the SEV-host jobs are left out by their rules (never
    pending for a runner that does not exist), every kvm job ran."""
    out = pipeline.proc.stdout
    not_run = {j["name"]: j["when"] for j in pipeline.listing if j["when"] == "never"}
    tags = {name: job.get("tags") for name, job in pipeline.expanded.items()
            if isinstance(job, dict) and "script" in job}
    assert set(not_run) == {"sev-es: [sev,kvm]", "sev-es: [sev-es,kvm]", "sev-snp"}
    for name in not_run:
        base = name.split(":")[0]
        assert not set(tags[base]) <= set(RUNNER_TAGS.split()), (name, tags[base])
        assert not re.search(rf"^ (PASS|FAIL) .*{re.escape(name)}", out, re.M), name
    ran = [j["name"] for j in pipeline.listing if j["when"] != "never"]
    assert {_matrix_values(n) for n in ran if _matrix_values(n)} == _expected_cells(pipeline)
    for name in ran:
        assert re.search(rf"^ (PASS|FAIL) +(\[[^]]*\] )?{re.escape(name)}", out, re.M), name
    print("not run (their runner tags are not in RUNNER_TAGS=kvm): "
          + ", ".join(f"{n} (tags {tags[n.split(':')[0]]})" for n in sorted(not_run)))


def test_the_broken_cells_fail_the_pipeline(pipeline):
    out = pipeline.proc.stdout
    assert pipeline.proc.returncode != 0, out[-3000:]
    fails = re.findall(r"^ FAIL .*", out, re.M)
    for cell in (BROKEN, DEAD):
        job = f"native: [{cell[0]},{cell[1]}]"
        assert [f for f in fails if job in f], (job, fails)
    assert len(fails) == 2, fails
    assert re.search(r"^ PASS .*dashboard", out, re.M), "the dashboard must run after a failed cell"


def _junit_cases(path: Path) -> list[tuple[str, str, str]]:
    """(name, outcome, message) of every testcase, the way GitLab reads JUnit."""
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome, message = child.tag, child.get("message", "")
        cases.append((case.get("name"), outcome, message))
    return cases


def test_each_cell_left_json_junit_and_html(pipeline):
    cells = _cell_dirs(pipeline)
    assert set(cells) == _expected_cells(pipeline) - {DEAD}
    assert set(_markers(pipeline)) == _expected_cells(pipeline)
    dead = _markers(pipeline)[DEAD]
    assert not list(dead.glob("*.json")) and not list(dead.glob("*.xml")), list(dead.iterdir())
    junit_glob = pipeline.expanded["native"]["artifacts"]["reports"]["junit"]
    for key, celldir in cells.items():
        root = celldir.parent.parent  # the job's artifacts, as the job's checkout held them
        junits = list(root.glob(junit_glob))
        assert len(junits) == 1, (key, junits)
        doc = schema.load(next(celldir.glob("suite-*.json")))
        verdicts = [c["verdict"] for c in doc["checks"]]
        cases = _junit_cases(junits[0])
        assert sorted(JUNIT_OF[v] for v in verdicts) == sorted(o for _, o, _ in cases), key
        assert len(list(celldir.glob("suite-*.xml"))) == 1
        page = next(celldir.glob("suite-*.html")).read_text()
        assert page.lstrip().lower().startswith("<!doctype html") and doc["title"] in page
        assert list((celldir / "matrix").glob("matrix-*.json")), "the matrix tables stay with the cell"
        if key == BROKEN:
            assert ("test_deliberately_broken_cell", "failure") in [c[:2] for c in cases]
            assert doc["summary"]["verdict"] == "fail"
        else:
            assert doc["summary"]["verdict"] != "fail", (key, doc["summary"])


def test_native_cells_deselect_other_platforms(pipeline):
    """A native cell's JUnit has no test of another platform, skipped or not
    (the README: other platforms' tests are deselected, not skipped)."""
    for (platform, accel), celldir in _cell_dirs(pipeline).items():
        if platform != "native":
            continue
        for name, outcome, message in _junit_cases(celldir / "pytest-junit.xml"):
            assert not re.search(r"platform \S+ not selected", message), (accel, name, message)
            assert not re.search(r"-sev(-es|-snp)?-", name), (accel, name, outcome)


def test_dashboard_has_a_column_per_cell_with_its_counts(pipeline):
    dash = pipeline.first_night
    cells = _cell_dirs(pipeline)
    columns = {(c["platform"], c["accel"]): c["id"] for c in dash["columns"]}
    assert set(columns) == set(cells) | {DEAD}
    # the dead cell: its column, one error naming its job (harness.report.lost)
    [lost] = [c for c in dash["cells"] if c["column"] == columns[DEAD]]
    assert lost["latest"] == "error" and lost["row"].endswith("ci-cell/results")
    assert f"native: [{DEAD[0]},{DEAD[1]}] wrote no results" in lost["history"][-1]["message"]
    total: dict[str, int] = {}
    for key, celldir in cells.items():
        doc = schema.load(next(celldir.glob("suite-*.json")))
        want: dict[str, int] = {}
        for check in doc["checks"]:
            want[check["verdict"]] = want.get(check["verdict"], 0) + 1
        got: dict[str, int] = {}
        for cell in dash["cells"]:
            if cell["column"] == columns[key]:
                got[cell["latest"]] = got.get(cell["latest"], 0) + 1
        assert got == want, key
        for verdict, n in want.items():
            total[verdict] = total.get(verdict, 0) + n
    total["error"] = total.get("error", 0) + 1
    assert {v: n for v, n in dash["summary"].items() if v in total} == total
    assert dash["summary"]["verdict"] == "fail"
    failing = {c["column"]: c["latest"] for c in dash["cells"] if c["latest"] in ("fail", "error")}
    assert failing == {columns[BROKEN]: "fail", columns[DEAD]: "error"}
    assert len(dash["runs"]) == len(cells) + 1


def test_history_starts_when_there_is_no_previous_pipeline(pipeline):
    """The history step asked the job-artifacts API (got a 404: no previous
    pipeline), said so, and the dashboard starts with one run per cell."""
    requests = pipeline.server.requests
    assert len(requests) == 1, requests
    path, token = requests[0]
    assert re.fullmatch(r"/api/v4/projects/\d+/jobs/artifacts/main/raw/dashboard/"
                        r"dashboard\.json\?job=dashboard", path), path
    assert token == TOKEN
    assert "history: no previous dashboard" in pipeline.proc.stdout
    assert all(len(c["history"]) == 1 and not c["changed"] for c in pipeline.first_night["cells"])


def _yesterday(dash: dict, broken_column: str) -> dict:
    """The previous night's dashboard: every date a day earlier, and the
    broken cell passing then."""
    prev = copy.deepcopy(dash)

    def earlier(stamp: str) -> str:
        return (datetime.fromisoformat(stamp) - timedelta(days=1)).isoformat()

    for col in prev["columns"]:
        col["latest_run"] = earlier(col["latest_run"])
    for run in prev["runs"]:
        run["started"] = earlier(run["started"])
        if f"{run['column']} | {run['platform']}" == broken_column:
            run["verdict"] = "partial"  # its boundaries, and no failure yet
    for cell in prev["cells"]:
        for entry in cell["history"]:
            entry["started"] = earlier(entry["started"])
        if cell["column"] == broken_column and cell["latest"] == "fail":
            cell["latest"] = cell["history"][-1]["verdict"] = "pass"
    return prev


@pytest.fixture(scope="module")
def next_night(pipeline, gcl):
    """The dashboard job again, on the same cells' artifacts, with the API
    now serving the previous night's dashboard (``_yesterday`` of this one)."""
    today = pipeline.first_night
    server = engines.ArtifactServer()
    try:
        server.body = json.dumps(_yesterday(today, _broken_column(today))).encode()
        server.path = pipeline.server.requests[0][0]
        proc = _gcl(gcl, pipeline.work, server.url, "dashboard")
    finally:
        server.close()
    assert proc.returncode == 0, proc.stdout[-3000:]
    return proc, _dashboard(pipeline)


def _broken_column(dash: dict) -> str:
    return next(c["id"] for c in dash["columns"] if (c["platform"], c["accel"]) == BROKEN)


def test_history_carries_over_from_the_previous_pipeline(pipeline, next_night):
    """The next night: the dashboard carries last night's history over and
    marks the cell that changed."""
    proc, dash = next_night
    today = pipeline.first_night
    broken_column = _broken_column(today)
    assert "history: previous dashboard of main carried over" in proc.stdout
    assert all(len(c["history"]) == 2 for c in dash["cells"])
    changed = [c for c in dash["cells"] if c["changed"]]
    assert [(c["column"], c["history"][0]["verdict"], c["latest"]) for c in changed] == [
        (broken_column, "pass", "fail")]
    assert len(dash["runs"]) == 2 * len(today["runs"])


def test_dashboard_page_in_chromium(pipeline, next_night, tmp_path):
    """The morning page, as Chromium builds it: one platform column per cell
    under its configuration, the broken cell red with its change marked,
    each cell's two nights of history."""
    engines.program("chromium", "the dashboard page is checked as a browser renders it")
    dash = next_night[1]
    page = next(pipeline.state.glob("artifacts/*/dashboard/dashboard.html"))
    dom = browser.dump_dom(page)
    grid = browser.table(dom, "grid")
    platforms = grid[1]
    assert sorted(platforms) == sorted(p for p, _ in _markers(pipeline))
    assert len(grid) == 2 + len(dash["rows"])
    def cells_of(verdict):
        return re.findall(rf'<td class="cell-{verdict}" data-row="([^"]*)" '
                          rf'data-column="([^"]*)">(.*?)</td>', dom, re.S)

    [(row, column, content)] = cells_of("fail")
    assert row.endswith("test_deliberately_broken_cell")
    assert column.endswith(f"| {BROKEN[1]} | {BROKEN[0]}")
    assert 'class="changed"' in content and content.count("<i class=") == 2
    [(row, column, _)] = cells_of("error")
    assert row.endswith("ci-cell/results") and column.endswith(f"| {DEAD[1]} | {DEAD[0]}")
    assert browser.table(dom, "runs")[1:] and len(browser.table(dom, "runs")) == 1 + len(dash["runs"])
    png = browser.screenshot(page, tmp_path / "dashboard.png", (1400, 1500))
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    keep = os.environ.get("IGVM_CI_SCREENSHOT")  # README: how the picture there is made
    if keep:
        shutil.copyfile(png, keep)
