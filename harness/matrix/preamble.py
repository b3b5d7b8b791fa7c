"""The lab preamble of a matrix cell: what a lab operator checks before
booking hardware, and what the real run prints before it starts QEMU.

For one cell: how it runs (mode, accelerator), the exact QEMU command line
the runner starts (harness.qemu.runner: the QMP socket and the console's
file descriptor, which exist only while QEMU runs, shown as placeholders),
the confidential-guest and IGVM objects with their properties, the IGVM
file (name, size, SHA-256), the launch digest the harness predicts with the
host inputs it assumed, the expected verdict with its source, and -- for
SEV-ES/SNP cells expected to boot on hardware -- what the GHCB model saw the
guest do (harness.ghcb).

The same function renders the block for ``pytest suites/ --dry-run`` and
for every cell of a real run (execute.run_cell writes it next to the cell's
logs, harness.matrix.dry_run collects them), so the two files diff cleanly:
on a lab host whose C-bit and reduced-phys-bits match ``--lab-cbitpos`` /
``--lab-reduced-phys-bits``, an empty diff means the run ran what the plan
showed.
"""

from __future__ import annotations

import copy
import hashlib
import re
import shlex
from pathlib import Path

WORKDIR = "<workdir>"
QMP_SOCKET = "<qmp-socket>"
CONSOLE = "<console-pipe>"
#: Platforms whose launch the harness measures, and those the GHCB model runs.
MEASURED = ("sev", "sev-es", "sev-snp")
MODELLED = ("sev-es", "sev-snp")


def launch_argv(cmd, workdir: Path | str) -> list[str]:
    """The argv the runner starts for ``cmd``, with the run's ephemeral parts
    as placeholders: it sets what harness.qemu.runner.QemuRun._start sets
    (QMP socket, console pipe, -S as runner.run decides it, exit-with-parent
    as the binary supports it).  tests/lab compares this with real runs."""
    from harness.qemu.runner import supports_exit_with_parent
    c = copy.deepcopy(cmd)
    c.qmp_path = QMP_SOCKET
    c.console_path = CONSOLE
    # runner.run: paused with a prelaunch hook (the matrix has none), a
    # panic device or a confidential guest
    c.paused = bool(c.pvpanic or c.confidential is not None)
    c.exit_with_parent = supports_exit_with_parent(c.binary)
    return normalize(c.argv(), workdir)


def normalize(argv: list[str], workdir: Path | str) -> list[str]:
    """A real argv with its run-specific parts replaced by the placeholders
    launch_argv uses: the cell's work directory, the QMP socket path and
    the console pipe's path."""
    wd = str(workdir)
    out = []
    for arg in argv:
        arg = arg.replace(wd.replace(",", ",,"), WORKDIR).replace(wd, WORKDIR)
        arg = re.sub(r"(id=qmp0,path=)[^,]*", rf"\g<1>{QMP_SOCKET}", arg)
        arg = re.sub(r"(id=con0,path=)[^,]*", rf"\g<1>{CONSOLE}", arg)
        out.append(arg)
    return out


def render(cell, mode: str, accel: str, expected: str, *, cmd=None, fixture=None,
           workdir: Path | str = "", skip: str | None = None, digest: str | None = None,
           model: str | None = None) -> str:
    """The block for one cell; every line is deterministic for the same
    QEMU binary, harness and host inputs."""
    lines = [f"== {cell.id}", f"mode: {mode} (accel {accel})", f"expected: {expected}"]
    if skip is not None:
        lines.append(f"not run: {skip}")
        return "\n".join(lines) + "\n"
    if fixture is not None:
        path = Path(fixture.igvm_path)
        name = normalize([str(path)], workdir)[0]
        if path.is_file():
            data = path.read_bytes()
            lines.append(f"igvm: {name} size={len(data)} sha256={hashlib.sha256(data).hexdigest()}"
                         f" ({fixture.description})")
        else:
            lines.append(f"igvm: {name} ({fixture.description})")
    if cmd is not None:
        lines.append(f"machine: {cmd.machine_arg()}")
        for obj in _objects(cmd, workdir):
            lines.append(f"object: {obj}")
    if digest is not None:
        lines.append(f"launch digest: {digest}")
    if model is not None:
        lines.append(f"guest (GHCB model): {model}")
    if cmd is not None:
        lines.append("command: " + shlex.join(launch_argv(cmd, workdir)))
    return "\n".join(lines) + "\n"


def _objects(cmd, workdir) -> list[str]:
    """Each -object as ``type: key=value ...`` (QemuOpts split on unescaped commas)."""
    argv = launch_argv(cmd, workdir)
    out = []
    for i, arg in enumerate(argv[:-1]):
        if arg != "-object":
            continue
        parts = re.split(r"(?<!,),(?!,)", argv[i + 1])
        out.append(f"{parts[0]}: " + " ".join(p.replace(",,", ",") for p in parts[1:]))
    return out


def predicted_digest(path: Path, platform: str, vcpus: int, policy: int | None, cpu: str | None) -> str:
    """``<algorithm> <hex>`` with the host inputs it assumed, or why there is
    none (QEMU refuses the file on that platform)."""
    from harness.errors import HarnessError
    from harness.ghcb import DEFAULT_CPU
    from harness.igvm.parser import parse
    from harness.measure.kvm_vmsa import QEMU_CPU_MODELS, HostProfile, cpu_signature
    from harness.measure.launch import predict

    name = cpu or DEFAULT_CPU[0]
    fms = QEMU_CPU_MODELS.get(name) or (DEFAULT_CPU[1:] if name == DEFAULT_CPU[0] else None)
    if fms is None:
        return f"none: no CPU signature known for -cpu {name}"
    host = HostProfile(cpu_sig=cpu_signature(*fms))
    try:
        pred = predict(parse(path.read_bytes()), platform, vcpus, host, policy)
    except HarnessError as exc:
        return f"none: {exc}"
    d = pred.as_dict()
    return (f"{d['algorithm']} {d['digest']} [vcpus={vcpus} policy={d['policy']} vm-type={d['vm_type']} "
            f"kernel={d['kernel_profile']} cpu={name} cpu-signature={d['cpu_signature']}]")


def model_line(path: Path, platform: str, vcpus: int, cbit: int, reduced: int,
               expect_status: int) -> str:
    """What the GHCB model saw the guest do, one line."""
    from harness.errors import HarnessError
    try:
        import unicorn  # noqa: F401
    except ImportError:
        return "not run: the unicorn package is not installed"
    from harness.ghcb import run_igvm
    from harness.ghcb.report import judge
    try:
        result = run_igvm(path.read_bytes(), platform, vcpus=vcpus, cbit=cbit, reduced_phys_bits=reduced)
    except HarnessError as exc:
        return f"not run: {exc}"
    verdict = judge(result, expect_status)
    return ("PASS " if verdict.passed else "FAIL ") + verdict.message
