"""What "booted" means for a vendor image: console markers, per payload kind.

A vendor image does not speak the harness's line protocol, so the boot
check looks for a marker on COM1 that the payload prints once it got where
a boot counts: a firmware's boot manager or shell, a kernel's banner.  The
markers are data (:data:`MARKERS`), each with the source that prints it;
``--expect-console REGEX`` replaces them.  Which markers apply follows from
the payload found in the image (:func:`detect`): OVMF is recognised by its
GUIDed footer table; anything else gets every known marker.

Markers are searched in the raw console text, escape sequences included:
each is a run of plain text the payload prints in one piece.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.errors import HarnessError
from harness.igvm import model as m
from harness.igvm import ovmf
from harness.igvm.defs import PageDataType


@dataclass(frozen=True)
class Marker:
    payload: str
    what: str
    regex: str
    source: str


MARKERS: tuple[Marker, ...] = (
    Marker("harness-guest", "the guest's final IGVMT line", r"IGVMT done status=",
           "fixtures/guests/reset16.s: msg_done; harness/guests/protocol.py"),
    Marker("ovmf", "the boot manager processing a boot option",
           r"BdsDxe: (?:loading|starting|failed to load|failed to start) Boot[0-9A-Fa-f]{4}",
           "edk2 OvmfPkg/Library/PlatformBmPrintScLib/StatusCodeHandler.c: HandleStatusCode "
           "(\"%a: %a %s \\\"%s\\\" from %s\", gEfiCallerBaseName BdsDxe)"),
    Marker("ovmf", "the boot manager found nothing to boot",
           r"BdsDxe: No bootable option (?:or device )?was found",
           "edk2 OvmfPkg/Library/PlatformBootManagerLib/BdsPlatform.c: "
           "PlatformBootManagerUnableToBoot (\"No bootable option was found.\" where "
           "PcdBootRestrictToFirmware is set, as OvmfPkg/AmdSev/AmdSevX64.dsc does; else "
           "\"No bootable option or device was found.\")"),
    Marker("ovmf", "the UEFI shell's banner", r"UEFI Interactive Shell v\d",
           "edk2 ShellPkg/Application/Shell/Shell.c: UefiMain (STR_VER_OUTPUT_MAIN_SHELL "
           "\"UEFI %s Shell v%d.%d\" with SupportLevel[3] \"Interactive\")"),
    Marker("ovmf", "the UEFI shell's prompt", r"Shell> ",
           "edk2 ShellPkg/Application/Shell/Shell.c: DoShellPrompt (STR_SHELL_SHELL)"),
    Marker("linux", "the Linux kernel's banner", r"Linux version \d",
           "linux init/version.c: linux_banner, printed first by init/main.c: start_kernel"),
    Marker("linux", "the harness initrd's first line (Linux userspace)", r"IGVMT linux kernel=",
           "fixtures/guests/linux/init (harness/guests/initrd.py): say linux kernel=..."),
)

#: Which markers count for each payload kind :func:`detect` can name.
PAYLOAD_MARKERS: dict[str, tuple[str, ...]] = {
    "ovmf": ("ovmf", "linux"),       # the firmware's own UI, or the OS it started
    "unknown": ("harness-guest", "ovmf", "linux"),
}

#: Where OVMF's GUIDed table footer sits once the firmware ends at 4 GiB:
#: QEMU looks for its GUID 48 bytes before the end of the flash image
#: (hw/i386/pc_sysfw_ovmf.c: pc_system_parse_ovmf_flash; the format layer's
#: harness.igvm.ovmf reads the whole table).
OVMF_FOOTER_GUID = ovmf.FOOTER_GUID.bytes_le
OVMF_FOOTER_GPA = ovmf.FOUR_GIB - ovmf.BYTES_AFTER_FOOTER - ovmf.GUID_SIZE
REGEX_LIMIT = 1000


def detect(model: m.IgvmFile, mask: int) -> str:
    """``"ovmf"`` when the page holding 4 GiB - 0x30 for this platform carries
    OVMF's footer GUID, else ``"unknown"``.  Reads at most one page."""
    page_gpa = OVMF_FOOTER_GPA & ~0xFFF
    for page in model.iter_page_data(mask):  # streamed: no list of every page
        if page.gpa != page_gpa or page.data_type != PageDataType.NORMAL or not page.data:
            continue
        off = OVMF_FOOTER_GPA - page_gpa
        if bytes(page.data[off:off + 16]) == OVMF_FOOTER_GUID:
            return "ovmf"
        break
    return "unknown"


#: How a payload kind's markers are named in messages.
KIND_NAMES = {"harness-guest": "harness guest", "ovmf": "OVMF", "linux": "Linux"}


@dataclass(frozen=True)
class Expectation:
    """The console regex a boot must show: ``what`` it is, ``why`` that one."""

    pattern: re.Pattern[str]
    what: str
    why: str
    markers: tuple[Marker, ...] = ()

    def which(self, text: str) -> Marker | None:
        """The marker ``text`` (what the console matched) is, if any."""
        return next((mk for mk in self.markers if re.search(mk.regex, text)), None)

    def as_dict(self) -> dict:
        return {"regex": self.pattern.pattern, "what": self.what, "why": self.why,
                "markers": [{"payload": mk.payload, "what": mk.what, "regex": mk.regex,
                             "source": mk.source} for mk in self.markers]}


def compile_user(regex: str) -> re.Pattern[str]:
    """A ``--expect-console`` regex, or one HarnessError line."""
    if not regex or len(regex) > REGEX_LIMIT:
        raise HarnessError(f"--expect-console: give a regular expression of 1 to "
                           f"{REGEX_LIMIT} characters")
    try:
        return re.compile(regex, re.MULTILINE)
    except re.error as exc:
        raise HarnessError(f"--expect-console: not a regular expression: {exc}") from None


def expectation(model: m.IgvmFile, mask: int, user: str | None = None,
                kind: str | None = None) -> Expectation:
    """What the boot check looks for: ``user`` (``--expect-console``) if
    given, else the markers of the payload ``kind`` found in the image
    (:func:`detect`, or what the survey's walk found)."""
    if user is not None:
        return Expectation(compile_user(user), f"match for --expect-console {user!r}",
                           "as asked")
    if kind is None:
        kind = detect(model, mask)
    chosen = tuple(mk for mk in MARKERS if mk.payload in PAYLOAD_MARKERS[kind])
    pattern = re.compile("|".join(f"(?:{mk.regex})" for mk in chosen))
    names = [KIND_NAMES[k] for k in dict.fromkeys(mk.payload for mk in chosen)]
    what = (", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0])
    why = "OVMF found in the image" if kind == "ovmf" else "payload not recognised"
    return Expectation(pattern, f"{what} marker", why, chosen)
