"""Benchmarks run only when asked for: ``pytest benchmarks/ --benchmark-only``.

The project-wide ``addopts`` cannot say ``--benchmark-skip``: that option
belongs to pytest-benchmark, a dev extra, and a plain ``pip install .`` would
turn every pytest run into a usage error.  Instead these items skip themselves
unless --benchmark-only is given, and say so when the plugin is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _plugin_loaded(config: pytest.Config) -> bool:
    return config.pluginmanager.hasplugin("benchmark")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _plugin_loaded(config):
        why = "pytest-benchmark is not installed (pip install -e '.[dev]')"
    elif not config.getoption("benchmark_only"):
        why = "benchmark: run with --benchmark-only"
    else:
        return
    mark = pytest.mark.skip(reason=why)
    for item in items:
        if HERE in Path(item.fspath).resolve().parents:
            item.add_marker(mark)
