"""The harness's worker choice (harness.parallel): when it adds workers,
that pytest-xdist really keeps an ``xdist_group`` on one worker (the boot
records depend on it; pytest 9.2 with xdist 3.8 silently did not), that
heavy tests start first, and that reports name tests without the group."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest

from harness.parallel import ENV, plain_nodeid, worker_args

GROUPED = ["-n", "5", "--dist", "loadgroup", "--no-loadscope-reorder"]   # 4 cores + 1


@pytest.mark.parametrize("args,env,cpus,expected", [
    ([], {}, 4, GROUPED),
    (["suites/"], {}, 2, ["-n", "3", "--dist", "loadgroup", "--no-loadscope-reorder"]),
    ([], {}, 1, []),                                   # one core: serial
    (["-n", "0"], {}, 4, []),
    (["-n0"], {}, 4, []),
    (["-p", "no:xdist"], {}, 4, []),
    (["-pno:xdist"], {}, 4, []),
    (["tests/x.py::test_one"], {}, 4, []),             # single tests: serial
    ([], {ENV: "0"}, 4, []),
    ([], {ENV: "3"}, 4, ["-n", "3", "--dist", "loadgroup", "--no-loadscope-reorder"]),
    (["-n", "2"], {}, 4, ["--dist", "loadgroup", "--no-loadscope-reorder"]),
    (["-n", "2", "--dist", "load"], {}, 4, []),        # the user's --dist stands
    (["--collect-only"], {}, 4, []),
    (["--pdb"], {}, 4, []),
    (["benchmarks/", "--benchmark-only"], {}, 4, []),
    ([], {"PYTEST_CURRENT_TEST": "tests/a.py::t (call)"}, 4, []),   # a pytest a test started
    ([], {"PYTEST_CURRENT_TEST": "x", ENV: "2"}, 4,                  # ... unless told
     ["-n", "2", "--dist", "loadgroup", "--no-loadscope-reorder"]),
])
def test_worker_args(args, env, cpus, expected):
    assert worker_args(args, env=env, cpus=cpus, have_xdist=True) == expected


def test_no_xdist_no_workers():
    assert worker_args([], env={}, cpus=4, have_xdist=False) == []


def test_a_bad_worker_count_is_a_usage_error():
    with pytest.raises(pytest.UsageError, match=ENV):
        worker_args([], env={ENV: "many"}, cpus=4, have_xdist=True)


def test_plain_nodeid():
    assert plain_nodeid("a.py::t[x]@g:ovmf") == "a.py::t[x]"
    assert plain_nodeid("a.py::t@g") == "a.py::t"
    assert plain_nodeid("a.py::t[user@host]") == "a.py::t[user@host]"
    assert plain_nodeid("a.py::t") == "a.py::t"


INNER = """
import os, time
import pytest

def _note(name):
    with open(os.environ["NOTES"], "a") as fh:
        fh.write(f"{time.monotonic():.6f} {name} {os.environ.get('PYTEST_XDIST_WORKER')}\\n")

@pytest.mark.parametrize("i", range(6))
def test_light(i):
    _note(f"light{i}")

@pytest.mark.xdist_group("boot-a")
def test_first_reader():
    _note("first")
    time.sleep(0.3)

@pytest.mark.xdist_group("boot-a")
def test_second_reader():
    _note("second")

@pytest.mark.weight(50)
def test_heavy():
    _note("heavy")
    time.sleep(0.3)
"""


def test_groups_stay_together_and_heavy_tests_go_first(tmp_path):
    pytest.importorskip("xdist")
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER))
    notes = tmp_path / "notes"
    env = {**os.environ, ENV: "2", "NOTES": str(notes)}
    env.pop("PYTEST_XDIST_WORKER", None)           # this test itself may run in a worker
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--rootdir", str(tmp_path), f"--junitxml={tmp_path / 'j.xml'}",
                          str(tmp_path / "test_inner.py")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    rows = [line.split() for line in notes.read_text().splitlines()]
    worker = {name: w for _, name, w in rows}
    assert worker["first"] == worker["second"], rows           # one group, one worker
    assert len(set(worker.values())) == 2, rows                # both workers were used
    started = [name for _, name, _ in sorted(rows, key=lambda r: float(r[0]))]
    assert started.index("heavy") <= 1, started                # among the first two to start
    names = [c.get("name") for c in ET.parse(tmp_path / "j.xml").getroot().iter("testcase")]
    assert len(names) == 9 and not any("@" in n for n in names), names
