"""QEMU command lines for booting IGVM files.

Two IGVM syntaxes exist:

* ``cfg`` -- the merged one (QEMU >= 9.2): ``-object igvm-cfg,id=igvm0,file=F``
  and ``-machine ...,igvm-cfg=igvm0`` (backends/igvm-cfg.c, the machine's
  ``igvm-cfg`` link property in hw/i386/pc.c);
* ``sev-guest`` -- the early proposal: an ``igvm-file`` property on the
  ``sev-guest`` object.  No released QEMU has it (10.2.2's target/i386/sev.c
  does not); it is generated so that the conformance matrix can show what a
  QEMU does with it (``qemu probe`` reports whether a build accepts it).

ROMs.  A QEMU built from Debian's ``+ds`` source has no firmware blobs.
When IGVM supplies the firmware the pc/q35 machines map no BIOS
(hw/i386/pc_sysfw.c, pc_system_firmware_init skips x86_bios_rom_init when
``igvm`` is set).  Found by trying QEMU 10.2.2 without blobs:

* without ``-nodefaults`` QEMU stops: ``failed to find romfile
  "vgabios-stdvga.bin"`` (the default VGA's option ROM; the default NIC's
  ROM would be next) -- so everything runs with ``-nodefaults``;
* with ``-nodefaults`` the guest boots, but QEMU still prints ``rom: file
  kvmvapic.bin: error Failed to open file`` (not fatal): the APIC creates
  the ``kvmvapic`` device (hw/intc/apic_common.c) whose option ROM is
  kvmvapic.bin (hw/i386/kvmvapic.c).  ``-global apic-common.vapic=off``
  (``vapic_off``, default on) removes that last ROM lookup; the vapic is a
  TPR-patching aid for old Windows guests and irrelevant to IGVM.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

IGVM_SYNTAXES = ("cfg", "sev-guest")
CONFIDENTIAL_TYPES = ("sev-guest", "sev-snp-guest")


@dataclass
class ConfidentialGuest:
    """A ``sev-guest`` / ``sev-snp-guest`` object (qapi/qom.json:
    SevGuestProperties, SevSnpGuestProperties)."""

    type: str = "sev-guest"
    id: str = "cgs0"
    policy: int | None = None
    cbitpos: int | None = None
    reduced_phys_bits: int | None = None
    properties: dict = field(default_factory=dict)

    def object_arg(self, igvm_file: str | None = None) -> str:
        if self.type not in CONFIDENTIAL_TYPES:
            raise ValueError(f"confidential guest type must be one of {CONFIDENTIAL_TYPES}")
        props = [self.type, f"id={self.id}"]
        if self.policy is not None:
            props.append(f"policy=0x{self.policy:x}")
        if self.cbitpos is not None:
            props.append(f"cbitpos={self.cbitpos}")
        if self.reduced_phys_bits is not None:
            props.append(f"reduced-phys-bits={self.reduced_phys_bits}")
        for key, val in self.properties.items():
            props.append(f"{key}={_qemu_value(val)}")
        if igvm_file is not None:
            props.append(f"igvm-file={_escape(igvm_file)}")
        return ",".join(props)


def _qemu_value(val) -> str:
    if isinstance(val, bool):
        return "on" if val else "off"
    return _escape(str(val))


def _escape(text: str) -> str:
    """QemuOpts values: a comma is written as two commas."""
    return text.replace(",", ",,")


#: Disk image formats a boot disk may have, told apart by their magic; the
#: lean build links both block drivers (block/raw-format.c, block/qcow2.c).
QCOW2_MAGIC = b"QFI\xfb"           # block/qcow2.h QCOW_MAGIC


def disk_format(head: bytes) -> str:
    """``qcow2`` for an image starting with the qcow2 magic, else ``raw``."""
    return "qcow2" if head[:4] == QCOW2_MAGIC else "raw"


@dataclass
class BootDisk:
    """A disk on q35's built-in AHCI controller (hw/i386/pc_q35.c creates
    ich9-ahci; ``ide.0`` is its first port).  ``snapshot``: guest writes go to
    a temporary overlay QEMU deletes as soon as it has opened it
    (block.c bdrv_append_temp_snapshot, block/file-posix.c raw_open_common
    unlinks a BDRV_O_TEMPORARY file), so the image itself is never written;
    the runner points QEMU's temporary directory into the run directory."""

    path: str
    format: str = "raw"
    snapshot: bool = True

    def args(self) -> list[str]:
        drive = f"file={_escape(self.path)},format={self.format},if=none,id=disk0"
        if self.snapshot:
            drive += ",snapshot=on"
        return ["-drive", drive, "-device", "ide-hd,drive=disk0,bus=ide.0"]


@dataclass
class QemuCommand:
    """Everything needed to start one QEMU; :meth:`argv` renders it."""

    binary: str
    machine: str = "q35"
    accel: str = "tcg"
    memory: str = "128M"
    smp: int | str = 1
    cpu: str | None = None
    igvm: str | None = None
    igvm_syntax: str = "cfg"
    confidential: ConfidentialGuest | None = None
    bios: str | None = None            # only for non-IGVM boots (e.g. a raw reset-vector ROM)
    qmp_path: str | None = None        # unix socket the harness listens on; QEMU connects
    #: COM1's pipe chardev: QEMU opens ``<console_path>.in`` and ``.out``
    #: (chardev/char-pipe.c), FIFOs the runner made (harness.qemu.runner)
    console_path: str | None = None
    debug_exit: bool = True
    debug_exit_iobase: int = 0x501     # hw/misc/debugexit.c default
    paused: bool = True                # -S: the runner issues "cont" after pre-launch queries
    no_reboot: bool = True             # a guest reset (triple fault) ends QEMU
    vapic_off: bool = True             # no kvmvapic.bin option ROM (see module doc)
    exit_with_parent: bool = False     # -run-with exit-with-parent=on (QEMU >= 9.1)
    # A guest panic pauses the VM (run state guest-panicked) instead of
    # QEMU's default "shutdown" (system/runstate-action.c, qemu-options.hx
    # -action panic=...): the runner sees STOP and reports STOPPED.
    panic_action: str | None = "pause"
    pvpanic: bool = False              # -device pvpanic (ISA, port 0x505: hw/misc/pvpanic-isa.c)
    disk: BootDisk | None = None
    extra: list[str] = field(default_factory=list)

    def machine_arg(self) -> str:
        props = [self.machine]
        if self.igvm is not None and self.igvm_syntax == "cfg":
            props.append("igvm-cfg=igvm0")
        if self.confidential is not None:
            props.append(f"confidential-guest-support={self.confidential.id}")
        return ",".join(props)

    def argv(self) -> list[str]:
        if self.igvm_syntax not in IGVM_SYNTAXES:
            raise ValueError(f"igvm_syntax must be one of {IGVM_SYNTAXES}")
        if self.igvm is not None and self.igvm_syntax == "sev-guest" and self.confidential is None:
            raise ValueError("the sev-guest IGVM syntax needs a confidential guest object")
        a = [self.binary, "-nodefaults", "-no-user-config", "-display", "none",
             "-machine", self.machine_arg(), "-accel", self.accel,
             "-m", str(self.memory), "-smp", str(self.smp)]
        if self.cpu:
            a += ["-cpu", self.cpu]
        if self.confidential is not None:
            igvm_here = self.igvm if self.igvm_syntax == "sev-guest" else None
            a += ["-object", self.confidential.object_arg(igvm_here)]
        if self.igvm is not None and self.igvm_syntax == "cfg":
            a += ["-object", f"igvm-cfg,id=igvm0,file={_escape(self.igvm)}"]
        if self.vapic_off:
            a += ["-global", "apic-common.vapic=off"]
        if self.bios is not None:
            a += ["-bios", self.bios]
        if self.qmp_path is not None:
            a += ["-chardev", f"socket,id=qmp0,path={_escape(self.qmp_path)}",
                  "-mon", "chardev=qmp0,mode=control"]
        if self.console_path is not None:
            a += ["-chardev", f"pipe,id=con0,path={_escape(self.console_path)}",
                  "-device", "isa-serial,chardev=con0,iobase=0x3f8,irq=4"]
        if self.debug_exit:
            a += ["-device", f"isa-debug-exit,iobase=0x{self.debug_exit_iobase:x}"]
        if self.pvpanic:
            a += ["-device", "pvpanic"]
        if self.disk is not None:
            a += self.disk.args()
        if self.panic_action is not None:
            a += ["-action", f"panic={self.panic_action}"]
        if self.exit_with_parent:
            a += ["-run-with", "exit-with-parent=on"]
        if self.paused:
            a.append("-S")
        if self.no_reboot:
            a.append("-no-reboot")
        return a + list(self.extra)

    def shell(self) -> str:
        return shlex.join(self.argv())
