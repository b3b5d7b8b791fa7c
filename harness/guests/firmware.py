"""What real firmware prints on the serial console once it got somewhere,
as data: regexes with the edk2 source that prints each line.

OVMF (RELEASE builds print no DEBUG output on COM1) writes nothing before
its boot manager; these lines are its first words and its last:

* ``BdsDxe: loading Boot0001 "..." from ...`` / ``starting`` / ``failed to
  load`` / ``failed to start``: OvmfPkg/Library/PlatformBmPrintScLib/
  StatusCodeHandler.c (``L"%a: %a %s \\"%s\\" from %s\\n"`` with
  gEfiCallerBaseName = BdsDxe, the module it is linked into), one per boot
  option BDS tries;
* ``BdsDxe: No bootable option was found.`` (PcdBootRestrictToFirmware,
  the AmdSev build) and ``BdsDxe: No bootable option or device was found.``:
  OvmfPkg/Library/PlatformBootManagerLib/BdsPlatform.c
  PlatformBootManagerUnableToBoot -- the boot manager gave up, for good;
* ``UEFI Interactive Shell v2.2``: ShellPkg/Application/Shell/Shell.uni
  STR_VER_OUTPUT_MAIN_SHELL (``"UEFI %s Shell v%d.%d"``), and the prompt
  ``Shell> `` (STR_SHELL_SHELL), where a build boots its built-in shell.

A run has reached the boot manager at the first BdsDxe line; it has
*settled* when BDS gave up or the shell prompt appeared (nothing else
happens without input).  The Linux marker is the initrd's ``IGVMT done``
(fixtures/guests/linux/init).
"""

from __future__ import annotations

import re

from harness.terminal import plain

#: name -> (regex, edk2 source)
OVMF_LINES: dict[str, tuple[str, str]] = {
    "bds-option": (r"BdsDxe: (?:loading|starting|failed to load|failed to start) Boot[0-9A-Fa-f]{4}",
                   "OvmfPkg/Library/PlatformBmPrintScLib/StatusCodeHandler.c"),
    "bds-gave-up": (r"BdsDxe: No bootable option (?:or device )?was found",
                    "OvmfPkg/Library/PlatformBootManagerLib/BdsPlatform.c: PlatformBootManagerUnableToBoot"),
    "shell-banner": (r"UEFI Interactive Shell v\d+\.\d+",
                     "ShellPkg/Application/Shell/Shell.uni: STR_VER_OUTPUT_MAIN_SHELL"),
    "shell-prompt": (r"Shell>(?: |$)", "ShellPkg/Application/Shell/Shell.uni: STR_SHELL_SHELL"),
}

#: The firmware reached its boot manager (any of its lines).
BOOT_MANAGER = "|".join(f"(?:{rx})" for rx, _ in OVMF_LINES.values())
#: Prompts a user at the console would answer, and the keys the harness
#: types (harness.qemu.runner ``answers``): name -> (regex over the raw
#: console, keys, edk2 source).  The shell's startup.nsh countdown
#: (ShellPkg/Application/Shell/Shell.c DoStartupScript, the message
#: STR_SHELL_STARTUP_QUESTION of Shell.uni, ``Press %HESC%N in %d seconds to
#: skip %Hstartup.nsh%N or any other key to continue.``: %H/%N are colour
#: escapes on a serial console) waits 5 s.  The harness presses "any other
#: key" (a space): the shell goes on at its next one-second poll, runs
#: startup.nsh where a file system has one (none of the suites' boots
#: does) and shows its prompt.  Not ESC: on a serial console the terminal
#: driver holds a lone ESC back until it knows no escape sequence follows
#: (MdeModulePkg/Universal/Console/TerminalDxe), another second.
ANSWER_LINES: dict[str, tuple[str, bytes, str]] = {
    "shell-startup-countdown": (r"Press (?:\x1b\[[0-9;]*m)*ESC(?:\x1b\[[0-9;]*m)* in \d+ seconds",
                                b" ", "ShellPkg/Application/Shell/Shell.c: DoStartupScript"),
}
ANSWERS: tuple[tuple[str, bytes], ...] = tuple((rx, keys) for rx, keys, _ in ANSWER_LINES.values())

#: The boot manager has nothing left to do without input.
SETTLED = "|".join(f"(?:{OVMF_LINES[k][0]})" for k in ("bds-gave-up", "shell-prompt"))

#: The harness initrd finished its report (fixtures/guests/linux/init).
LINUX_DONE = r"IGVMT done status=\d+"
#: The kernel gave up (kernel/panic.c: panic() prints "Kernel panic - not syncing").
LINUX_PANIC = r"Kernel panic - not syncing[^\r\n]*"

_ANY = re.compile(BOOT_MANAGER)


def boot_manager_lines(console: str) -> list[str]:
    """The firmware's boot-manager lines, in order, without terminal
    escapes: what a run showed of BDS (compared between IGVM and -bios)."""
    out = []
    for line in plain(console).splitlines():   # rows drawn by cursor moves are lines
        line = line.strip()
        m = _ANY.search(line)
        if m:
            out.append(line[m.start():])
    return out
