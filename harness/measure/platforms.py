"""The platforms the measurement layer predicts, by their command-line names.

A module of its own so that ``measure FW.fd`` (the classic launch) does not
import the IGVM launch planner (:mod:`harness.measure.pages`) to read them.
"""

from __future__ import annotations

from harness.errors import HarnessError
from harness.igvm.defs import PlatformType

#: Platforms the measurement layer predicts, and their names on the command line.
PLATFORM_NAMES = {"sev": PlatformType.SEV, "sev-es": PlatformType.SEV_ES,
                  "sev-snp": PlatformType.SEV_SNP}


def platform_type(name: str | PlatformType) -> PlatformType:
    if isinstance(name, PlatformType):
        return name
    try:
        return PLATFORM_NAMES[name.lower()]
    except KeyError:
        raise HarnessError(f"platform {name!r} has no launch measurement; choose one of "
                           + ", ".join(PLATFORM_NAMES)) from None
