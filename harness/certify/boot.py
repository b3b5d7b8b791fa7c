"""The boot check: run the image under the QEMU under test as far as the host allows.

native: under KVM or TCG; SEV platforms: to the end on SEV hardware, else
under TCG up to the hardware boundary QEMU reaches without it (a verdict of
its own, never a pass).  Process handling (QMP, console, reaping) is the
runner's (``harness.qemu.runner``); this module only chooses the command line
and reads the outcome.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.certify import adapters
from harness.certify.adapters import Unavailable

if TYPE_CHECKING:
    from harness.certify.profile import Outcome, Target


def boot(target: "Target", platform: str) -> "Outcome":
    from harness.certify.profile import Outcome

    if not target.boot:
        return Outcome("skip", "boot not requested (--no-boot)")
    if target.qemu is None:
        raise Unavailable("boot unavailable: no QEMU with IGVM found ("
                          + "; ".join(target.qemu_notes) + ")")
    adapters.need("harness.qemu.runner", "boot")
    raise Unavailable("boot unavailable: runner integration pending")
