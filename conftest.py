"""Top-level conftest: makes the checkout's plugin load even when the
package is not installed (the installed package registers it through the
``pytest11`` entry point, so it is never registered twice)."""

import importlib.metadata


def _plugin_installed() -> bool:
    for ep in importlib.metadata.entry_points(group="pytest11"):
        if ep.name == "igvm_harness":
            return True
    return False


pytest_plugins = ([] if _plugin_installed() else ["harness.plugin"]) + [
    "harness.matrix.pytest_plugin",  # the conformance matrix report (also under xdist)
]
