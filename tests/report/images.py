"""Small IGVM images for the certification tests, built with the format layer.

``native_hello`` carries hand-assembled 16-bit code at the reset vector
(encodings from the Intel SDM, vol. 2): it writes "OK\\n" to COM1 (port
0x3f8) and ends QEMU through isa-debug-exit at port 0x501 (QEMU's default
iobase, hw/misc/debugexit.c), so a boot is observable without any of the
harness's own guest payloads.
"""

from __future__ import annotations

from pathlib import Path

from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import KVM_VMSA_GPA, PageDataType, PlatformType

HELLO_CODE = bytes.fromhex(
    "BAF803"   # mov dx, 0x3f8
    "B04F" "EE"  # mov al, 'O'; out dx, al
    "B04B" "EE"  # mov al, 'K'; out dx, al
    "B00A" "EE"  # mov al, '\n'; out dx, al
    "BA0105"   # mov dx, 0x501
    "B000" "EE"  # mov al, 0; out dx, al  -> QEMU exits with (0 << 1) | 1
    "F4"       # hlt
)


#: Writes "P" to COM1, then reports a guest panic to the pvpanic ISA device
#: (port 0x505, bit 0 = panicked: hw/misc/pvpanic-isa.c, hw/misc/pvpanic.c).
PANIC_CODE = bytes.fromhex(
    "BAF803"   # mov dx, 0x3f8
    "B050" "EE"  # mov al, 'P'; out dx, al
    "BA0505"   # mov dx, 0x505
    "B001" "EE"  # mov al, 1; out dx, al
    "F4"       # hlt
)


#: Prints the NUL-terminated text at page offset 0x100 (segment offset
#: 0xF100 under the reset CS base 0xFFFF0000) to COM1, then ends QEMU
#: through isa-debug-exit.  ``cs lodsb``: DS is 0 at reset, the text is in
#: the code segment (Intel SDM vol. 2: LODS, segment override 2E).
PRINT_CODE = bytes.fromhex(
    "BAF803"   # 0x00 mov dx, 0x3f8
    "BE00F1"   # 0x03 mov si, 0xF100
    "FC"       # 0x06 cld
    "2EAC"     # 0x07 loop: cs lodsb
    "84C0"     # 0x09 test al, al
    "7403"     # 0x0b jz done (0x10)
    "EE"       # 0x0d out dx, al
    "EBF7"     # 0x0e jmp loop (0x07 - 0x10 = -9)
    "BA0105"   # 0x10 done: mov dx, 0x501
    "B000" "EE"  # mov al, 0; out dx, al  -> QEMU exits with status 1
    "F4"       # hlt
)
TEXT_OFFSET, TEXT_LIMIT = 0x100, 0xE00
#: replaces the isa-debug-exit tail of PRINT_CODE: the guest spins, as a
#: firmware waiting at its boot manager does ("jmp $", EB FE)
SPIN = bytes.fromhex("EBFE")

#: OVMF's GUIDed table footer, 48 bytes before the end of the flash image
#: (hw/i386/pc_sysfw_ovmf.c: OVMF_TABLE_FOOTER_GUID), in EFI_GUID byte order.
OVMF_FOOTER_GUID = bytes.fromhex("de82b596b21ff745baeaa366c55a082d")


def reset_page(code: bytes = HELLO_CODE) -> bytes:
    """The page at 0xFFFFF000: code at offset 0xF00, and at the reset vector
    0xFFFFFFF0 (offset 0xFF0) a near jump back to it (E9 rel16:
    0xF00 - 0xFF3 = -0xF3 = 0xFF0D)."""
    page = bytearray(4096)
    page[0xF00:0xF00 + len(code)] = code
    page[0xFF0:0xFF3] = bytes.fromhex("E90DFF")
    return bytes(page)


def native_hello(path: Path, *platforms: PlatformType) -> Path:
    b = IgvmBuilder()
    for p in platforms or (PlatformType.NATIVE,):
        b.platform(p)
    b.page(0xFFFFF000, reset_page())
    b.write(path)
    return path


def native_panic(path: Path) -> Path:
    b = IgvmBuilder()
    b.platform(PlatformType.NATIVE)
    b.page(0xFFFFF000, reset_page(PANIC_CODE))
    b.write(path)
    return path


def with_vp_context(path: Path, platform: PlatformType, gpa: int = KVM_VMSA_GPA) -> Path:
    b = IgvmBuilder()
    mask = b.platform(platform)
    b.page(0xFFFFF000, reset_page())
    b.vp_context(gpa, bytes(4096), mask=mask)
    b.write(path)
    return path


def with_secrets_page(path: Path, platform: PlatformType) -> Path:
    b = IgvmBuilder()
    b.platform(platform)
    b.page(0xFFFFF000, reset_page())
    b.page(0x100000, bytes(4096), data_type=PageDataType.SECRETS)
    b.write(path)
    return path


def console_image(path: Path, text: bytes, *, ovmf_footer: bool = False, spin: bool = False,
                  platform: PlatformType = PlatformType.NATIVE) -> Path:
    """A native image whose guest prints ``text`` (raw bytes: escape
    sequences, control characters) to COM1 and ends QEMU (``spin``: keeps
    running instead); with ``ovmf_footer`` its top page carries OVMF's footer
    GUID at 4 GiB - 0x30 so that it is taken for OVMF."""
    if len(text) >= TEXT_LIMIT or b"\0" in text:
        raise ValueError("text must be shorter than 0xE00 bytes and hold no NUL")
    code = PRINT_CODE[:0x10] + SPIN if spin else PRINT_CODE
    page = bytearray(reset_page(code))
    page[TEXT_OFFSET:TEXT_OFFSET + len(text)] = text
    if ovmf_footer:
        page[0xFD0:0xFE0] = OVMF_FOOTER_GUID
    b = IgvmBuilder()
    b.platform(platform)
    b.page(0xFFFFF000, bytes(page))
    b.write(path)
    return path
