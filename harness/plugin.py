"""pytest plugin: command-line options, markers and fixtures of the harness.

Loaded through the ``pytest11`` entry point (see pyproject.toml).  The
fixtures stay thin: every decision is taken by the layers below.
"""

from __future__ import annotations

import pytest

PLATFORMS = ("auto", "native", "sev", "sev-es", "sev-snp")
ACCELS = ("auto", "kvm", "tcg")

MARKERS = {
    "platforms(*names)": "run only when --platform is one of names (auto runs all the host can)",
    "requires(*capabilities)": "skip unless the QEMU/host probe reports every capability named",
    "qemu": "needs a QEMU-under-test with IGVM support",
    "slow": "takes more than a few seconds",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("igvm-harness", "IGVM conformance harness")
    group.addoption("--platform", choices=PLATFORMS, default="auto",
                    help="platform under test (default: auto, from the host probe)")
    group.addoption("--qemu", metavar="PATH", default=None,
                    help="QEMU binary under test (default: $QEMU, the harness's build, then PATH)")
    group.addoption("--accel", choices=ACCELS, default="auto",
                    help="accelerator for boots (default: auto: kvm where usable, else tcg)")
    group.addoption("--igvm", metavar="FILE", default=None,
                    help="a vendor IGVM image to certify")


def pytest_configure(config: pytest.Config) -> None:
    for marker, text in MARKERS.items():
        config.addinivalue_line("markers", f"{marker}: {text}")
