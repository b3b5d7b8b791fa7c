"""Launch-measurement verification on SEV hardware, through the runner.

``harness.measure.verify`` holds the SEV / SEV-ES session flow (LAUNCH_MEASURE
HMAC, attestation report) and the SEV-SNP ID-block flow, and leaves starting
QEMU to its caller through a *launcher*: ``launch(object_properties,
igvm_path)``, a context manager that starts QEMU paused with that object and
yields something with ``execute(command, arguments)``.  This module is that
launcher, built on ``harness.qemu.runner.QemuRun`` (process group, QMP,
console, log directory, cleanup), plus the calls the certification profile
makes on a host whose SEV level is enabled.

Exercised here to the hardware boundary: under TCG QEMU refuses the
confidential-guest object, which the launcher reports as ``LaunchFailed``
with QEMU's log (tests/report/test_hardware_launcher.py).  The verification
calls themselves run only on an SEV host.
"""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path
from typing import Any, Iterator

from harness.certify.model import Target
from harness.igvm import builder
from harness.measure import kvm_vmsa, launch as launch_mod, verify
from harness.qemu import cmdline, runner

_RUNS = itertools.count(1)
LAUNCH_TIMEOUT = 60.0
LAUNCH_MEMORY = "512M"


class _Qmp:
    """``execute(command, arguments)`` over a live QemuRun (logged to qmp.log)."""

    def __init__(self, run: Any, error_type: type[Exception]) -> None:
        self._run = run
        self._error = error_type

    def execute(self, command: str, arguments: dict | None = None) -> Any:
        try:
            return self._run.command(command, **(arguments or {}))
        except Exception as exc:  # noqa: BLE001 - QMP errors become the layer's error type
            raise self._error(f"{command}: {exc}") from None


def launcher(qemu: str, workdir: Path, *, accel: str = "kvm", vcpus: int = 1,
             memory: str = LAUNCH_MEMORY, timeout: float = LAUNCH_TIMEOUT):
    """A launcher for ``harness.measure.verify``: each launch is one paused
    QEMU with its own log directory under ``workdir``."""
    @contextlib.contextmanager
    def launch(props: dict, igvm_path: str | None) -> Iterator[_Qmp]:
        props = dict(props)
        kind = props.pop("qom-type")
        policy = props.pop("policy", None)
        cg = cmdline.ConfidentialGuest(
            type=kind, id=props.pop("id", "sev0"),
            policy=int(policy) if policy is not None else None,
            cbitpos=props.pop("cbitpos", None),
            reduced_phys_bits=props.pop("reduced-phys-bits", None),
            properties=props)
        cmd = cmdline.QemuCommand(binary=qemu, accel=accel, memory=memory, smp=vcpus,
                                  igvm=igvm_path, confidential=cg)
        run = runner.QemuRun(cmd, workdir / f"launch-{next(_RUNS)}", timeout)
        run.start()
        try:
            if run.qmp is None:  # QEMU exited (or hung) before QMP was up
                outcome = run.wait()
                log = ""
                try:
                    log = (run.run_dir / "stderr.log").read_text("utf-8", "replace")
                except OSError:
                    pass
                raise verify.LaunchFailed(
                    f"QEMU stopped during launch: {outcome.error or outcome.status.value}", log)
            yield _Qmp(run, verify.QmpCommandError)
        finally:
            run.kill()
            run.cleanup()

    return launch


@contextlib.contextmanager
def capabilities_qmp(qemu: str, workdir: Path, accel: str = "kvm") -> Iterator[_Qmp]:
    """A paused QEMU without a guest object, for ``query-sev-capabilities``.

    It never runs a guest, but q35 still needs a firmware image to start; a
    64 KiB zero ROM (the smallest size QEMU maps as BIOS) stands in, since
    Debian's QEMU source ships none (issue 3)."""
    run_dir = workdir / f"caps-{next(_RUNS)}"
    run_dir.mkdir(parents=True, exist_ok=True)
    rom = run_dir / "zero-rom.bin"
    rom.write_bytes(bytes(64 * 1024))
    run = runner.QemuRun(cmdline.QemuCommand(binary=qemu, accel=accel, bios=str(rom)),
                         run_dir, LAUNCH_TIMEOUT)
    run.start()
    try:
        yield _Qmp(run, verify.QmpCommandError)
    finally:
        run.kill()
        run.cleanup()


def verify_on_hardware(target: Target, platform: str) -> dict[str, Any]:
    """Observed launch measurement for ``platform`` on this SEV host:
    ``{"ok", "observed", "details"}``."""
    workdir = target.workdir / f"{target.image.stem}-measure-{platform}"
    workdir.mkdir(parents=True, exist_ok=True)
    launch = launcher(target.qemu, workdir, vcpus=target.vcpus)
    host = kvm_vmsa.HostProfile()
    if platform in ("sev", "sev-es"):
        with capabilities_qmp(target.qemu, workdir) as caps:
            v = verify.verify_sev(target.model, platform, target.vcpus, host, None, caps,
                                  launch, str(target.image.resolve()), str(workdir))
        return {"ok": bool(v.ok), "observed": v.attestation_digest or v.measurement,
                "details": {"api": f"{v.api[0]}.{v.api[1]}", "build": v.build,
                            "policy": f"{v.policy:#x}", "launch_measure": v.measurement,
                            "attestation_matches": v.attestation_matches,
                            "triage": v.report}}
    caps = target.probe.sev_capabilities or {}
    good, tampered = verify.verify_snp(
        target.model, target.vcpus, host, launch_mod.DEFAULT_SNP_POLICY,
        int(caps.get("cbitpos", 51)), int(caps.get("reduced-phys-bits", 1)), launch,
        builder.serialize, workdir=str(workdir))
    return {"ok": good.launched and not tampered.launched, "observed": good.digest_in_id_block,
            "details": {"launch_with_digest": good.detail,
                        "launch_with_one_byte_changed": tampered.detail,
                        "tampered_refused": not tampered.launched}}
