"""Top-level conftest: loads the harness's pytest plugins from the checkout
when the package is not installed.  An installed harness registers the same
modules through its ``pytest11`` entry points (pyproject.toml), so none is
ever registered twice.  Listing them here rather than in suites/*/conftest.py
matters under pytest-xdist: the controller, which writes the matrix and the
reports, only loads the root conftest."""

import importlib.metadata

PLUGINS = {
    "igvm_harness": "harness.plugin",                     # options, fixtures, skips
    "igvm_harness_matrix": "harness.matrix.pytest_plugin",  # conformance matrix summary
    "igvm_harness_reports": "harness.report.pytest_collect",  # JSON/JUnit/HTML reports
    "igvm_harness_timing": "harness.report.pytest_timing",  # where the time went
    "igvm_harness_reference": "harness.reference.pytest_counts",  # the oracle tests' counts
    # harness.parallel (-n auto by default) works only from the entry point:
    # a conftest is read too late to add options.
    "igvm_harness_dry_run": "harness.matrix.dry_run",   # --dry-run: the lab preamble of each cell
}

_installed = {ep.name for ep in importlib.metadata.entry_points(group="pytest11")}
pytest_plugins = [module for name, module in PLUGINS.items() if name not in _installed]
