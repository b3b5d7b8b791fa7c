"""The boot check: run the image under the QEMU under test as far as the host allows.

native: under KVM or TCG; SEV platforms: to the end on SEV hardware (KVM and
the kvm_amd level enabled), else under TCG up to the hardware boundary QEMU
reaches without it -- a verdict of its own, never a pass.  Process handling
(QMP, console, reaping, log directory) is the runner's
(``harness.qemu.runner``); the confidential-guest object and the boundary
come from the expectations data (``harness/expect/data/platforms.toml``).
This module only chooses the command line and reads the outcome.

A vendor image is not one of our guests: it does not speak the harness's
line protocol.  "Booted" therefore means: QEMU accepted the file, started
the guest, and the guest printed the expected marker on COM1 before the
deadline (:mod:`harness.certify.console`: ``--expect-console REGEX``, else
the markers of the payload found in the image: OVMF's boot manager or
shell, a Linux banner, the harness guests' last line).  The run ends as
soon as the marker shows; a guest that prints something else, or nothing,
fails, naming what it printed last.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from harness.certify import console as console_mod
from harness.certify.model import Outcome, Target, Unavailable
from harness.certify.survey import of_platform
from harness.expect import table as expect_table
from harness.qemu import runner
from harness.qemu.cmdline import BootDisk, ConfidentialGuest, QemuCommand
from harness.qemu.outcome import Outcome as QemuOutcome
from harness.qemu.probe import Capabilities
from harness.report.model import Evidence, Log
from harness.terminal import plain

#: kvm_amd parameter that must be enabled for each platform to run on hardware.
KVM_AMD_LEVEL = {"sev": "sev", "sev-es": "sev_es", "sev-snp": "sev_snp"}
CONSOLE_LIMIT = 64 * 1024
LOG_LIMIT = 32 * 1024
BOOT_MEMORY = "512M"
TCG_CBITPOS = 51  # placeholder C-bit position where no SEV host tells the real one


def _usable(caps: Capabilities | None, accel: str) -> bool:
    acc = caps.accels.get(accel) if caps is not None else None
    return bool(acc and acc.usable)


def choose_accel(target: Target, platform: str) -> tuple[str, bool, str]:
    """(accelerator, runs on hardware, why) for this platform on this host."""
    caps = target.probe
    kvm = _usable(caps, "kvm")
    if platform == "native":
        if target.accel != "auto":
            return target.accel, False, f"--accel {target.accel}"
        return ("kvm", False, "KVM usable") if kvm else ("tcg", False, "KVM not usable")
    host = caps.host if caps is not None else None
    level = KVM_AMD_LEVEL[platform]
    enabled = bool(host and host.enabled(level))
    if enabled and kvm and target.accel in ("auto", "kvm"):
        return "kvm", True, f"/dev/sev and kvm_amd {level}=Y"
    why = (f"no /dev/sev or kvm_amd {level} disabled" if not enabled
           else "KVM not usable" if not kvm else f"--accel {target.accel}")
    return "tcg", False, why + ": running to the hardware boundary under TCG"


def _confidential(platform: str, caps: Capabilities,
                  table: expect_table.Table) -> ConfidentialGuest:
    plat = table.platforms.get(platform)
    if plat is None or not plat.object_type:
        raise Unavailable(f"boot unavailable: no confidential-guest object recorded for "
                          f"{platform} in the expectations data")
    props = dict(plat.properties)
    policy = props.pop("policy", None)
    cg = ConfidentialGuest(type=plat.object_type,
                           policy=int(str(policy), 0) if policy is not None else None,
                           properties=props)
    # reduced-phys-bits is mandatory (qapi/qom.json SevCommonProperties);
    # cbitpos is checked against the host's CPUID on SEV hardware only
    # (target/i386/sev.c: sev_common_kvm_init), so it comes from the host
    # when known and is a placeholder under TCG.
    sevcaps = caps.sev_capabilities or {}
    cpuid = (caps.host.cpuid if caps.host is not None else None) or {}
    cg.cbitpos = int(sevcaps.get("cbitpos") or cpuid.get("cbitpos") or TCG_CBITPOS)
    cg.reduced_phys_bits = int(sevcaps.get("reduced-phys-bits") or 1)
    return cg


def _read(path: Path, limit: int) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    text = data[-limit:].decode("utf-8", "replace")
    return (f"[... {len(data) - limit} bytes cut ...]\n" if len(data) > limit else "") + text


#: KVM's exit for an instruction it cannot emulate (linux
#: include/uapi/linux/kvm.h: KVM_INTERNAL_ERROR_EMULATION = 1), which QEMU
#: reports as "KVM internal error. Suberror: 1" and stops the VM with run
#: state internal-error (accel/kvm/kvm-all.c: kvm_handle_internal_error).
KVM_EMULATION_FAILURE = re.compile(r"KVM internal error\. Suberror: 1\b")


def _kvm_emulation_failure(outcome: QemuOutcome, run_dir: Path) -> bool:
    return (outcome.run_state == "internal-error"
            and bool(KVM_EMULATION_FAILURE.search(_read(run_dir / "stderr.log", LOG_LIMIT))))


def _tail(text: str, lines: int = 3, limit: int = 200) -> str:
    """The last lines of a console, escape sequences dropped, for a message."""
    shown = [ln.strip() for ln in plain(text).splitlines() if ln.strip()]
    return " | ".join(shown[-lines:])[-limit:]


def boot(target: Target, platform: str) -> Outcome:
    if not target.boot:
        return Outcome("skip", "boot not requested (--no-boot)")
    if target.qemu is None:
        raise Unavailable("boot unavailable: no QEMU with IGVM found ("
                          + "; ".join(target.qemu_notes) + ")")
    if target.probe is None:  # never run a binary the probe could not call QEMU
        raise Unavailable("boot unavailable: QEMU " + target.qemu + " could not be probed ("
                          + "; ".join(target.qemu_notes) + ")")
    if target.probe.missing("igvm-cfg"):
        raise Unavailable(f"boot unavailable: {target.probe.missing('igvm-cfg')}")
    accel, hardware, why = choose_accel(target, platform)
    if target.probe.missing(accel):
        raise Unavailable(f"boot unavailable: {target.probe.missing(accel)}")
    expect = console_mod.expectation(target.model, target.mask(platform), target.expect_console,
                                     kind=of_platform(target, platform).console.kind)
    confidential, boundary = None, None
    if platform != "native":
        table = expect_table.load()
        confidential = _confidential(platform, target.probe, table)
        boundary = table.platforms[platform].boundary
    disk = (None if target.disk is None
            else BootDisk(str(target.disk.resolve()), target.disk_format))
    cmd = QemuCommand(binary=target.qemu, accel=accel, memory=BOOT_MEMORY,
                      smp=target.vcpus, igvm=str(target.image.resolve()),
                      confidential=confidential, pvpanic=True, disk=disk)
    run_dir = target.workdir / f"{target.image.stem}-boot-{platform}"
    progress = None
    if target.progress is not None:
        note = target.progress
        progress = lambda t, line: note(f"      {platform}.boot {t:5.1f} s: {line[:100]}")  # noqa: E731
    outcome = runner.run(cmd, run_dir, timeout=target.boot_timeout, until=expect.pattern,
                         progress=progress)
    kvm_limit = None
    if (platform == "native" and accel == "kvm" and target.accel == "auto"
            and _kvm_emulation_failure(outcome, run_dir) and not target.probe.missing("tcg")):
        # A limit of this host's KVM (nested KVM cannot emulate what the
        # guest does), not a verdict on the image: "auto" falls back to TCG.
        kvm_limit = (f"KVM stopped the guest with an emulation failure ({outcome.error}; "
                     f"logs: {run_dir}), a limit of this host's KVM: booted under TCG instead")
        accel, why = "tcg", "KVM emulation failure on this host"
        cmd.accel = "tcg"
        run_dir = run_dir.with_name(run_dir.name + "-tcg")
        outcome = runner.run(cmd, run_dir, timeout=target.boot_timeout, until=expect.pattern,
                         progress=progress)
    console = outcome.console[-CONSOLE_LIMIT:] if outcome.console else None
    ev = Evidence(
        command=list(outcome.argv),
        console=console,
        logs=[Log("QEMU stderr", _read(run_dir / "stderr.log", LOG_LIMIT)),
              Log("QMP transcript", _read(run_dir / "qmp.log", LOG_LIMIT))],
        details={"outcome": outcome.to_json(), "accel": accel, "on_hardware": hardware,
                 "why": why, "log_dir": str(run_dir), "expect_console": expect.as_dict(),
                 **({"disk": _disk_details(target)} if target.disk else {}),
                 **({"kvm_limit": kvm_limit} if kvm_limit else {})},
    )
    ev.logs = [log for log in ev.logs if log.text]
    verdict = _judge(target, outcome, run_dir, ev, accel, hardware, why, boundary, expect)
    if kvm_limit and not verdict.message.endswith(kvm_limit):
        verdict.message += f"; {kvm_limit}"
    return verdict


def _disk_details(target: Target) -> dict:
    """What the report says of ``--disk``: not hashed (an OS disk may be many
    GiB), but named, sized, and known to be left unwritten."""
    assert target.disk is not None
    return {"path": str(target.disk.resolve()), "format": target.disk_format,
            "bytes": target.disk.stat().st_size, "written": False,
            "note": "attached to q35's AHCI port 0 with snapshot=on: guest writes went to a "
                    "temporary overlay"}


def _judge(target: Target, outcome: QemuOutcome, run_dir: Path, ev: Evidence, accel: str,
           hardware: bool, why: str, boundary, expect: console_mod.Expectation) -> Outcome:
    """The boot verdict of one finished run."""
    status = outcome.status.value
    wrote = len(outcome.console or "")
    stderr = _read(run_dir / "stderr.log", LOG_LIMIT)
    if (status == "ABORTED" and boundary is not None and not hardware
            and re.search(boundary.error, outcome.error or stderr)):
        # The expectations data names this platform's boundary error (e.g.
        # SEV-SNP stops at guest memory creation without KVM).
        status = "BOUNDARY"
    if status == "BOUNDARY":
        how_far = " ".join(boundary.description.split()) if boundary else ""
        if hardware:
            return Outcome("fail", f"QEMU stopped on SEV hardware: {outcome.error}", ev)
        return Outcome("boundary", f"{outcome.error} ({why}; observable stages: "
                       f"{', '.join(boundary.observable) if boundary else '?'}) {how_far}".strip(),
                       ev)
    if status == "ABORTED":
        return Outcome("fail", f"QEMU refused the image: {outcome.error}", ev)
    if status == "CRASHED":
        return Outcome("fail", f"QEMU crashed: {outcome.error}", ev)
    if status == "STOPPED":
        # guest-panicked, or internal-error (on SEV-ES/SNP hardware: a GHCB
        # termination request; see harness.qemu.outcome): the guest gave up.
        return Outcome("fail", f"QEMU stopped the guest: {outcome.error}", ev)
    if outcome.matched is not None:
        marker = expect.which(outcome.matched)
        ev.details["marker"] = dataclasses.asdict(marker) if marker else None
        after = outcome.matched_at if outcome.matched_at is not None else outcome.duration
        return Outcome("pass", f"guest printed {plain(outcome.matched).strip()!r} under {accel} "
                               f"after {after:.1f} s: "
                               f"{marker.what if marker else expect.what} ({expect.why})", ev)
    seen = (f"it wrote {wrote} bytes to COM1, last: {_tail(outcome.console)!r}" if wrote
            else "it wrote nothing to COM1")
    if status == "HUNG":
        return Outcome("fail", f"no {expect.what} ({expect.why}) within "
                               f"{target.boot_timeout:g} s under {accel}: {seen} (raise "
                               "--boot-timeout if the firmware is slow, or say what booted "
                               "means with --expect-console)", ev)
    return Outcome("fail", f"the guest ended QEMU (exit status {outcome.exit_code}) without a "
                           f"{expect.what} ({expect.why}): {seen}", ev)
