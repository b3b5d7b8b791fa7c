"""Fixtures of the runner's own tests.

They need *a* QEMU, not necessarily one with IGVM: the guest is booted as a
raw ROM (``-bios``) and configured through QEMU's generic loader device
(hw/core/generic-loader.c writes a file into guest memory at reset), so the
runner's reliability is proven with whatever QEMU the host has.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.guests.protocol import CONFIG_GPA, ConfigPage


@pytest.fixture(scope="session")
def any_qemu(pytestconfig) -> str:
    """The QEMU under test when there is one, else qemu-system-x86_64 on PATH."""
    from harness.qemu import discover
    explicit = pytestconfig.getoption("--qemu")
    found, _notes = discover.find(explicit)
    if found is not None:
        return found.path
    path = shutil.which("qemu-system-x86_64")
    if not path:
        pytest.skip("no qemu-system-x86_64 (neither a QEMU under test nor one on PATH)")
    return path


@pytest.fixture(scope="session")
def reset_rom(guest_images, tmp_path_factory) -> Path:
    """reset16 as a 64 KiB -bios image (x86_bios_rom_init wants a multiple
    of 64 KiB; the page lands at the top, covering 0xFFFFFFF0)."""
    rom = tmp_path_factory.mktemp("rom") / "reset16-64k.bin"
    rom.write_bytes(bytes(0x10000 - 0x1000) + guest_images["reset16"].data)
    return rom


@pytest.fixture
def config_blob(tmp_path):
    """Write a ConfigPage to a file for ``-device loader``; returns argv."""
    def make(cfg: ConfigPage) -> list[str]:
        p = tmp_path / "config.bin"
        p.write_bytes(cfg.pack())
        return ["-device", f"loader,file={p},addr=0x{CONFIG_GPA:x},force-raw=on"]
    return make
