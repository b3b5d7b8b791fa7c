"""``matrix run``: cells from a TOML description, one pytest per cell, one dashboard."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.report import matrix_run


def _spec(tmp_path, body):
    path = tmp_path / "m.toml"
    path.write_text(textwrap.dedent(body))
    return path


def test_spec_expands_to_the_product(tmp_path):
    spec = matrix_run.load_spec(_spec(tmp_path, '''
        name = "n"
        platforms = ["native", "sev", "sev-es"]
        accels = ["tcg", "kvm"]
        [[qemu]]
        name = "a"
        [[qemu]]
        name = "b"
    '''))
    cells = matrix_run.expand(spec)
    assert len(cells) == 2 * 3 * 2
    assert cells[0].label == "qemu=a platform=native accel=tcg"


@pytest.mark.parametrize("body, match", [
    ('platforms = ["tdx"]', "'platforms' must list"),
    ('acels = ["tcg"]', "unknown key"),
    ('[[qemu]]\nname = "x"\npath = "/nonexistent/qemu"', "not an executable"),
    ('images = ["/nonexistent.igvm"]', "no such file"),
    ('timeout = -1', "positive"),
    ('[[qemu]]\nname = "x"\npath = "/bin/true"\nsource = "debian"', "not both"),
    ('[[qemu]]\nname = "x"\nsrc = "debian"', "unknown key"),
    ('name = [', "not TOML"),
    ('qemu = 5', "'qemu' must be \\[\\[qemu\\]\\] tables"),  # was a TypeError traceback
    ('timeout = true', "positive"),                           # a TOML boolean is no number
    ('timeout = nan', "positive"),
])
def test_bad_specs_are_one_clear_error(tmp_path, body, match):
    with pytest.raises(HarnessError, match=match):
        matrix_run.load_spec(_spec(tmp_path, body))


def test_matrix_run_writes_cells_and_a_dashboard(tmp_path, capsys):
    tests = tmp_path / "t"
    tests.mkdir()
    (tests / "test_cell.py").write_text(textwrap.dedent('''
        def test_platform_seen(request):
            assert request.config.getoption("platform") in ("native", "sev-es")
        def test_fails_on_sev_es(request):
            assert request.config.getoption("platform") != "sev-es"
    '''))
    spec = _spec(tmp_path, f'''
        name = "unit"
        platforms = ["native", "sev-es"]
        accels = ["tcg"]
        pytest_args = ["{tests}", "-q", "-p", "no:cacheprovider"]
        timeout = 300
    ''')
    rc = main(["matrix", "run", str(spec), "--output", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert rc == 1  # the sev-es cell has a failure
    assert "[1/2] qemu=under-test platform=native accel=tcg" in err
    assert "matrix unit: 2 cells" in out
    dash = json.loads((tmp_path / "out" / "dashboard.json").read_text())
    assert len(dash["columns"]) == 2
    latest = {(c["row"].rsplit("::", 1)[-1], c["column"].split(" | ")[-1]): c["latest"]
              for c in dash["cells"]}
    assert latest[("test_fails_on_sev_es", "native")] == "pass"
    assert latest[("test_fails_on_sev_es", "sev-es")] == "fail"
    assert latest[("test_platform_seen", "sev-es")] == "pass"
    assert (tmp_path / "out" / "cells" / "under-test-sev-es-tcg" / "run.log").is_file()


def test_dry_run_lists_cells(tmp_path, capsys):
    spec = _spec(tmp_path, 'platforms = ["native", "sev"]\naccels = ["tcg"]')
    assert main(["matrix", "run", str(spec), "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "[1/2] qemu=under-test platform=native accel=tcg",
        "[2/2] qemu=under-test platform=sev accel=tcg"]


def test_source_builds_are_announced_in_a_dry_run(tmp_path, capsys):
    spec = _spec(tmp_path, '[[qemu]]\nname = "deb"\nsource = "debian:10.2.2"')
    assert main(["matrix", "run", str(spec), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "qemu deb: built from debian:10.2.2 before the cells run"
    assert out[1] == "[1/1] qemu=deb platform=auto accel=auto"


@pytest.mark.parametrize("name", ["../../escape", "/abs/path", "a/b", ".."])
def test_default_output_stays_in_reports(tmp_path, name):
    """The matrix name becomes part of a directory name, never a path."""
    spec = matrix_run.load_spec(_spec(tmp_path, f'name = "{name}"'))
    out = matrix_run.default_output(spec)
    assert out.parent == Path("reports") and out.name not in ("", ".", "..")
    assert out.name.startswith("matrix-") and "/" not in out.name
