"""The certification profile: the checks a vendor's IGVM image goes through.

For one image: specification validation and QEMU lint; then, for every
platform the file declares (or the one asked for): the directives it uses
against what QEMU supports on that platform and version, the VMSA
restrictions, the predicted launch measurement, and a boot as far as this
host allows.  Each is a separate check with a verdict and its evidence; the
profile returns a :class:`harness.report.model.Report`.

The list of checks is data (:func:`plan`) so that the CLI, the pytest suite
(``suites/certify``) and the Avocado wrapper run exactly the same checks.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.certify import boot as boot_mod
from harness.certify import checks, console
from harness.certify import corim as corim_checks
from harness.certify.model import (BOOT_TIMEOUT, PLATFORM_CHOICES, QEMU_PLATFORMS, CheckFn,
                                   Outcome, Target, Unavailable)
from harness.certify.survey import survey
from harness.errors import HarnessError
from harness.igvm import model as m
from harness.igvm import parser
from harness.igvm.defs import PlatformType
from harness.igvm.rules import IgvmFormatError
from harness.igvm.limits import MAX_VCPUS
from harness.qemu import discover, probe
from harness.report import fingerprint
from harness.report.model import Check, MatrixCell, Report, utc_now

__all__ = ["PLATFORM_CHOICES", "QEMU_PLATFORMS", "Outcome", "Planned", "Target",
           "certify", "plan", "prepare", "run_check"]


@dataclass
class Planned:
    id: str
    name: str
    group: str
    platform: str | None
    func: CheckFn


def _declared(model: m.IgvmFile) -> tuple[list[str], list[str]]:
    qemu, other = [], []
    for ptype in model.platform_types():
        name = QEMU_PLATFORMS.get(ptype)
        if name:
            qemu.append(name)
        else:
            other.append(ptype.name.lower() if isinstance(ptype, PlatformType)
                         else f"type-{ptype}")
    return qemu, other


def prepare(image: str | Path, platform: str = "auto", *, qemu: str | None = None,
            accel: str = "auto", vcpus: int = 1, boot: bool = True,
            boot_timeout: float = BOOT_TIMEOUT, workdir: str | Path | None = None,
            expect_console: str | None = None, disk: str | Path | None = None,
            corim_key: str | Path | None = None) -> Target:
    """Read the image and find the QEMU under test; bad input is a HarnessError.

    ``expect_console``: the regex a boot must print (``--expect-console``);
    None: the markers of the payload found in the image.  ``disk``: an OS
    disk for the boot (``--disk``); it needs ``expect_console``, because the
    firmware's own markers appear before the OS on the disk has run."""
    image = Path(image)
    if platform not in PLATFORM_CHOICES:
        raise HarnessError(f"unknown platform {platform!r} (choose from "
                           f"{', '.join(PLATFORM_CHOICES)})")
    if not 1 <= vcpus <= MAX_VCPUS:
        raise HarnessError(f"--vcpus must be 1 to {MAX_VCPUS} (QEMU's q35 limit)")
    if expect_console is not None:
        console.compile_user(expect_console)
    disk_path, disk_format = (None, "raw") if disk is None else _disk(disk, expect_console)
    data = parser.read(image, require_igvm=True)  # size bound and magic first, then mapped, not read
    # One pass over the headers: validation, QEMU lint and what every
    # platform's checks need (harness.certify.survey).  A file with
    # violations still gets its per-platform checks (the violations are a
    # check of their own).
    model, violations, surveyed = survey(data, platform, vcpus)
    if model is None:
        raise HarnessError(f"{image}: not an IGVM file: "
                           f"{IgvmFormatError.from_violation(violations[0])}", 1)
    declared, other = _declared(model)
    platforms = declared if platform == "auto" else [platform]
    if not boot_timeout > 0:  # also refuses NaN
        raise HarnessError(f"--boot-timeout must be a positive number of seconds, "
                           f"not {boot_timeout}")
    discovered, notes = discover.find(qemu)
    found = discovered.path if discovered else None
    notes = list(notes)
    caps = None
    if found:
        try:
            caps = probe.probe(found)
        except HarnessError as exc:
            if qemu:  # the QEMU asked for is not one (e.g. --qemu /bin/true)
                raise HarnessError(f"--qemu {qemu}: {exc}") from None
            notes.append(str(exc))
    return Target(image=image, data=data, model=model, declared=declared,
                  other_platforms=other, platforms=platforms, requested=platform,
                  qemu=found, qemu_notes=notes, probe=caps, accel=accel, vcpus=vcpus,
                  boot=boot, boot_timeout=boot_timeout,
                  workdir=Path(workdir) if workdir else Path("reports") / "work",
                  expect_console=expect_console, disk=disk_path, disk_format=disk_format,
                  corim_key=_corim_key(corim_key), violations=violations, survey=surveyed)


def _corim_key(path: str | Path | None) -> Path | None:
    """``--corim-key``: checked here, so that a bad key is a usage error, not a check."""
    if path is None:
        return None
    from harness.corim.sign import load_public_key
    load_public_key(path)
    return Path(path)


def _disk(disk: str | Path, expect_console: str | None) -> tuple[Path, str]:
    """The ``--disk`` file (a regular file) and its format, or one HarnessError."""
    from harness.inputs import open_input
    from harness.qemu.cmdline import disk_format
    if expect_console is None:
        raise HarnessError("--disk needs --expect-console REGEX: what the OS on the disk prints "
                           "once it is up (the firmware's boot-manager lines come before it)")
    fd = open_input(disk)
    try:
        head = os.pread(fd, 4, 0)
    except OSError as exc:
        raise HarnessError(f"{disk}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return Path(disk), disk_format(head)


def plan(target: Target) -> list[Planned]:
    """The checks for this image, in the order they run."""
    out = [
        Planned("spec.validate", "IGVM specification validation", "spec", None,
                checks.spec_validate),
        Planned("qemu.lint", "QEMU lint (valid IGVM that QEMU will refuse)", "lint", None,
                checks.qemu_lint),
    ]
    with_corim = _corim_platforms(target)
    if with_corim is not None:
        out.append(Planned("corim.headers", "CoRIM headers (reference values the image carries)",
                           "corim", None, corim_checks.headers))
    if target.requested != "auto":
        out.append(Planned("platform.declared", f"Image declares platform {target.requested}",
                           "platform", target.requested, checks.platform_declared))
    for name in target.other_platforms:
        out.append(Planned(f"platform.{name}", f"Platform {name} (not implemented by QEMU)",
                           "platform", name, checks.platform_not_in_qemu))
    for p in target.platforms:
        if p not in target.declared:
            continue
        out += [
            Planned(f"{p}.directives", f"Directives supported on {p}", "directives", p,
                    checks.directives),
            Planned(f"{p}.vmsa", f"VMSA / VP context restrictions on {p}", "vmsa", p,
                    checks.vmsa),
            Planned(f"{p}.measurement", f"Predicted launch measurement on {p}",
                    "measurement", p, checks.measurement),
            Planned(f"{p}.boot", f"Boot on {p}", "boot", p, checks.boot),
        ]
        if with_corim and p in with_corim:
            out.insert(len(out) - 1, Planned(
                f"{p}.corim", f"CoRIM reference digest vs QEMU's launch on {p}", "corim", p,
                corim_checks.reference))
    return out


def _corim_platforms(target: Target) -> list[str] | None:
    """The platforms with a CoRIM in the image; None when it carries no CoRIM
    header (the CoRIM modules are not even imported then)."""
    from harness.igvm.defs import HeaderType, OPTIONAL_BIT
    types = {HeaderType.CORIM_DOCUMENT, HeaderType.CORIM_SIGNATURE}
    runs = getattr(target.model.initializations, "type_runs", None)
    seen = ((t for _, t, _ in runs()) if runs is not None
            else (h.header_type for h in target.model.initializations))
    if not any(t & ~OPTIONAL_BIT in types for t in seen):
        return None
    return corim_checks.platforms_with_corim(target)


def run_check(target: Target, planned: Planned) -> tuple[Check, list[MatrixCell]]:
    """Run one check; a missing capability is a skip naming it, a harness
    error is an ``error`` verdict (the check could not be decided)."""
    started = time.monotonic()
    try:
        outcome = planned.func(target, planned.platform)
    except Unavailable as exc:
        outcome = Outcome("skip", str(exc))
    except HarnessError as exc:
        outcome = Outcome("error", str(exc))
    check = Check(id=planned.id, name=planned.name, verdict=outcome.verdict,
                  message=outcome.message, group=planned.group, platform=planned.platform,
                  duration_s=round(time.monotonic() - started, 3), evidence=outcome.evidence)
    for cell in outcome.cells:
        cell.check = planned.id
    return check, outcome.cells


def _accel(target: Target) -> str:
    """The accelerator a native boot uses here ("auto" resolved by the probe)."""
    if target.accel != "auto" or target.probe is None:
        return target.accel
    return boot_mod.choose_accel(target, "native")[0]


ProgressFn = Callable[[int, int, Planned, "Check | None"], None]


def certify(target: Target, progress: ProgressFn | None = None,
            command: list[str] | None = None) -> Report:
    """Run the whole profile and return the report."""
    started, t0 = utc_now(), time.monotonic()
    steps = plan(target)
    report = Report(
        kind="certification",
        title=f"Certification of {target.image.name}",
        environment=fingerprint.fingerprint(target.qemu, accel=_accel(target),
                                            image=target.image, probe=target.probe),
        subject={"name": target.image.name, "platform": target.requested,
                 "declared_platforms": target.declared + target.other_platforms,
                 "certified_platforms": [p for p in target.platforms if p in target.declared],
                 "vcpus": target.vcpus},
        run={"started": started, **({"command": command} if command else {})},
    )
    if target.qemu_notes and not report.environment["qemu"].get("note"):
        report.environment["qemu"]["note"] = "; ".join(target.qemu_notes)
    for index, planned in enumerate(steps, 1):
        if progress:
            progress(index, len(steps), planned, None)
        check, cells = run_check(target, planned)
        report.checks.append(check)
        report.matrix.extend(cells)
        if progress:
            progress(index, len(steps), planned, check)
    report.run["finished"] = utc_now()
    report.run["duration_s"] = round(time.monotonic() - t0, 3)
    return report
