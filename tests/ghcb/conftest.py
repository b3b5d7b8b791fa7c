"""Builders for the GHCB model's tests: the matrix's own IGVM files (the
ones the suite boots on SEV-ES/SNP hardware), payloads patched into
negative twins, and small assembled guests for the model's parts."""

from __future__ import annotations

import shutil
import struct
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from harness.fixtures import native as nat
from harness.guests.build import GuestImage
from harness.guests.protocol import CONFIG_GPA, ConfigPage, IoMode
from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import KVM_VMSA_GPA
from harness.matrix import recipes

BINUTILS = ("as", "ld", "objcopy")
#: C-bit and reduced-phys-bits of the matrix's sev-guest objects under TCG
#: (harness.matrix.execute._host_sev_bits: recipes.DEFAULT_CBIT, 1).
CBIT, REDUCED = recipes.DEFAULT_CBIT, 1


@pytest.fixture(scope="session")
def images():
    from harness.matrix.guests import guest_images
    return guest_images()


@pytest.fixture
def cell_file(images, tmp_path):
    """``cell_file(case_id, platform, guests=None) -> bytes``: the IGVM file
    the matrix builds for that cell (harness.matrix.recipes), optionally
    with other payload images."""
    from harness.expect.table import load
    cases = {c.id: c for c in load().cases}

    def build(case_id: str, platform: str, guests: dict | None = None) -> bytes:
        case = cases[case_id]
        ctx = recipes.Context(case.id, case.form, platform, case.params, tmp_path,
                              {**images, **(guests or {})}, CBIT)
        return recipes.build(case.recipe, ctx).igvm_path.read_bytes()

    return build


def patched(image: GuestImage, tmp_path: Path, old: bytes, new: bytes) -> GuestImage:
    """``image`` with the one occurrence of ``old`` replaced by ``new`` (same
    length): a negative twin of a payload.  Fails when the pattern is not
    there exactly once (the payload changed: update the twin)."""
    data = image.data
    assert len(old) == len(new)
    assert data.count(old) == 1, f"{old.hex()} occurs {data.count(old)} times in {image.name}"
    path = tmp_path / f"{image.name}-twin.bin"
    path.write_bytes(data.replace(old, new))
    return replace(image, path=path)


def patch_config(data: bytes, **fields) -> bytes:
    """The IGVM file with fields of its (single) configuration page changed
    (page data is not covered by the header checksum).  The page is found by
    its head: the magic, the GHCB I/O mode and the status recipes ask for
    (the payload's code holds the magic too, as an immediate)."""
    head = b"IGVMTCFG" + struct.pack("<II", IoMode.GHCB_MSR, recipes.STATUS_OK)
    at = data.find(head)
    assert at >= 0 and data.find(head, at + 1) < 0
    buf = bytearray(data)
    offsets = {"io_mode": (0x8, "<I"), "exit_status": (0xC, "<I"), "serial_port": (0x10, "<H"),
               "exit_port": (0x12, "<H")}
    for name, value in fields.items():
        off, fmt = offsets[name]
        struct.pack_into(fmt, buf, at + off, value)
    return bytes(buf)


# ------------------------------------------------------ assembled guests
@pytest.fixture(scope="session")
def assemble(tmp_path_factory):
    """``assemble(source) -> bytes``: 64-bit GNU as source linked at 1 MiB
    (the payload's address) into a flat image."""
    missing = [t for t in BINUTILS if not shutil.which(t)]
    if missing:
        pytest.fail(f"binutils ({', '.join(missing)}) not installed: setup.sh installs them",
                    pytrace=False)
    work = tmp_path_factory.mktemp("asm")
    count = [0]

    def run(source: str) -> bytes:
        count[0] += 1
        stem = work / f"g{count[0]}"
        stem.with_suffix(".s").write_text(".code64\n.text\n.globl _start\n_start:\n" + source + "\n")
        stem.with_suffix(".ld").write_text("SECTIONS { . = 0x100000; .image : { *(.text*) *(.data*) } }\n")
        for argv in (["as", "--64", "-o", str(stem.with_suffix(".o")), str(stem.with_suffix(".s"))],
                     ["ld", "-m", "elf_x86_64", "-T", str(stem.with_suffix(".ld")), "-o",
                      str(stem.with_suffix(".elf")), str(stem.with_suffix(".o"))],
                     ["objcopy", "-O", "binary", str(stem.with_suffix(".elf")),
                      str(stem.with_suffix(".bin"))]):
            proc = subprocess.run(argv, capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr
        return stem.with_suffix(".bin").read_bytes()

    return run


def snippet_file(code: bytes, platform: str, *, idt: bytes | None = None,
                 config: ConfigPage | None = None, extra: dict | None = None) -> bytes:
    """An IGVM file in the matrix's layout (identity map with the C-bit,
    GDT, stack, configuration page) whose payload at 1 MiB is ``code``,
    entered through a VMSA; ``idt`` is a page placed at 0x8000 that the
    VMSA's IDTR points at; ``extra`` maps GPAs to page contents."""
    b = IgvmBuilder()
    m = b.platform(recipes.PLATFORM_TYPES[platform])
    b.page(CONFIG_GPA, (config or ConfigPage(io_mode=IoMode.GHCB_MSR)).pack(), mask=m)
    for gpa, page in sorted(recipes.page_tables(CBIT).items()):
        b.page(gpa, page, mask=m)
    b.page(nat.GDT_GPA, nat.gdt(), mask=m)
    b.zero_pages(nat.STACK_GPA, (nat.STACK_TOP - nat.STACK_GPA) // 4096, mask=m)
    b.pages(0x100000, code, mask=m)
    for gpa, page in sorted((extra or {}).items()):
        b.page(gpa, page, mask=m)
    vmsa = bytearray(recipes.vmsa_for(0x100000, platform, {}))
    if idt is not None:
        b.page(IDT_GPA, idt, mask=m)
        struct.pack_into("<IQ", vmsa, 0x84, len(idt) - 1, IDT_GPA)   # VMSA idtr.limit, .base
    b.vp_context(KVM_VMSA_GPA, bytes(vmsa), mask=m)
    return b.build()


IDT_GPA = 0x8000


def idt_with(vector: int, handler: int, selector: int = nat.CODE_SEL) -> bytes:
    """IDT entries 0..vector with one present 64-bit interrupt gate
    (AMD APM vol. 2 "Long-Mode Interrupt Control Transfers": 16-byte gates)."""
    gate = struct.pack("<HHBBHII", handler & 0xFFFF, selector, 0, 0x8E, (handler >> 16) & 0xFFFF,
                       handler >> 32, 0)
    return bytes(vector * 16) + gate
