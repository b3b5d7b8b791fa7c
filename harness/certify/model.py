"""The certification profile's data: the target under test and what a check returns.

Kept apart from :mod:`harness.certify.profile` (which plans and runs the
checks) so that the check modules (:mod:`~harness.certify.checks`,
:mod:`~harness.certify.boot`) import it without importing the profile, and
the profile imports them: no import circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from harness.igvm import model as m
from harness.igvm.defs import PlatformType
from harness.report.model import Evidence, MatrixCell

if TYPE_CHECKING:
    from harness.qemu.probe import Capabilities

#: IGVM platform types QEMU implements, by the names the harness uses.
QEMU_PLATFORMS = {
    PlatformType.NATIVE: "native",
    PlatformType.SEV: "sev",
    PlatformType.SEV_ES: "sev-es",
    PlatformType.SEV_SNP: "sev-snp",
}
PLATFORM_CHOICES = ("auto", *QEMU_PLATFORMS.values())
#: Seconds a boot may take to print its marker.  Boots end at the marker, so
#: this only bounds a failing one; OVMF under TCG on a loaded 2-core host
#: takes 5-20 s to its boot manager.
BOOT_TIMEOUT = 30.0


class Unavailable(Exception):
    """A check cannot run because a capability is missing; the message
    names it (e.g. "boot unavailable: no QEMU with IGVM found (...)"),
    and the profile reports it as the check's skip reason."""


@dataclass
class Target:
    """Everything the checks need to know about the image and the host."""

    image: Path
    data: bytes
    model: m.IgvmFile
    declared: list[str]
    other_platforms: list[str]
    platforms: list[str]
    requested: str
    qemu: str | None
    qemu_notes: list[str]
    probe: "Capabilities | None"
    accel: str
    vcpus: int
    boot: bool
    boot_timeout: float
    workdir: Path
    #: what "booted" means (a regex on the console), or None: the defaults
    #: for the payload found in the image (harness.certify.console)
    expect_console: str | None = None
    #: ``--disk``: the vendor's OS disk on the boot's AHCI port (never
    #: written: QEMU's snapshot overlay) and its format (raw or qcow2)
    disk: Path | None = None
    disk_format: str = "raw"
    #: one line of progress during long steps (a boot waiting for its marker)
    progress: Callable[[str], None] | None = field(default=None, repr=False)
    #: ``--corim-key``: the public key the image's CoRIM signatures are verified with
    corim_key: Path | None = None
    #: the image's CoRIM headers, read once (harness.certify.corim.findings)
    corim: object = field(default=None, repr=False)
    #: the specification violations the survey's scan found (harness.igvm.rules.Violations)
    violations: object = field(default=None, repr=False)
    #: what the checks need of the image, from the one walk that validated it
    #: (harness.certify.survey.Survey); None: the checks read the model themselves
    survey: object = field(default=None, repr=False)

    def mask(self, platform: str) -> int:
        for ptype, name in QEMU_PLATFORMS.items():
            if name == platform:
                return self.model.mask_for(ptype)
        return 0


@dataclass
class Outcome:
    """What a check function returns."""

    verdict: str
    message: str
    evidence: Evidence = field(default_factory=Evidence)
    cells: list[MatrixCell] = field(default_factory=list)


CheckFn = Callable[[Target, "str | None"], Outcome]
