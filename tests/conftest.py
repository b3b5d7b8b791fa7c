"""Fixtures shared by the harness's own tests.

``qemu_source``: the QEMU source the harness downloaded during set-up (or
``$IGVM_HARNESS_QEMU_SRC``), through harness.qemu.source.downloaded(); tests
that read QEMU's code or Debian's packaging skip only when no source has been
downloaded at all.

``stock_qemu``: Debian's own ``qemu-system-x86`` that set-up installs beside
the QEMU-under-test (bookworm: QEMU 7.2, no IGVM, no ``-run-with
exit-with-parent``), used by its path and never found through PATH, where
discovery would not take it anyway (harness/qemu/discover.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

STOCK_QEMU = Path("/usr/bin/qemu-system-x86_64")  # Debian package qemu-system-x86


@pytest.fixture(scope="session")
def qemu_source():
    """harness.qemu.source.Downloaded: .tree, .dsc, .debian, .version."""
    from harness.errors import HarnessError
    from harness.qemu import build, source
    try:
        found = source.downloaded()
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    if found is None:
        pytest.skip(f"no QEMU source downloaded in {build.cache_root()} "
                    f"(run `igvm-harness qemu build`, or set ${source.SOURCE_ENV})")
    return found


@pytest.fixture(scope="session")
def qemu_packaging(qemu_source) -> Path:
    """The debian/ directory of the downloaded source package."""
    if qemu_source.debian is None:
        pytest.skip(f"the QEMU source at {qemu_source.tree} ({qemu_source.how}) "
                    f"has no Debian packaging (debian/control)")
    return qemu_source.debian


@pytest.fixture(scope="session")
def stock_qemu() -> str:
    """Debian's stock QEMU (no IGVM), by its path."""
    if not os.access(STOCK_QEMU, os.X_OK):
        pytest.skip(f"no stock Debian QEMU at {STOCK_QEMU}: run ./setup.sh "
                    f"(installs qemu-system-x86)")
    return str(STOCK_QEMU)
