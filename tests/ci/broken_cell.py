"""A deliberately broken CI cell, for the pipeline tests (tests/ci/): not
collected by the test command (no ``test_`` prefix); the tests add it to a
cell's selection by path.

Its one check fails in the cell named by ``$IGVM_BROKEN_CELL``
(``PLATFORM/ACCEL``, e.g. ``sev/tcg``) and passes in every other cell, so a
pipeline that runs it must show exactly that cell failed: in the job's
status, the pipeline's exit and the dashboard's column.  In the cell named
by ``$IGVM_DEAD_CELL`` it kills its own pytest process, as an OOM kill or a
crash would: that cell writes no results at all, and the dashboard must
still show it (``igvm-harness report lost-cells``).
"""

from __future__ import annotations

import os
import signal


def test_deliberately_broken_cell(request):
    here = f"{request.config.getoption('platform')}/{request.config.getoption('accel')}"
    if here == os.environ.get("IGVM_DEAD_CELL"):
        if os.environ.get("PYTEST_XDIST_WORKER"):  # the controller writes the results
            os.kill(os.getppid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
    broken = os.environ.get("IGVM_BROKEN_CELL", "")
    assert here != broken, f"cell {here} is broken on purpose ($IGVM_BROKEN_CELL)"
