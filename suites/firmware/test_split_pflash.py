"""Debian's split OVMF build (``OVMF_CODE_4M.fd`` + ``OVMF_VARS_4M.fd``), the
pair libvirt boots from two pflash units, wrapped into IGVM.

QEMU maps pflash unit 0 (code) to end at 4 GiB and unit 1 (variable store)
directly below it (hw/i386/pc_sysfw.c: pc_system_flash_map, ``gpa =
0x100000000 - total_size``), so ``wrap-ovmf CODE --vars VARS`` wraps the
store followed by the code: the bytes the guest sees at the same addresses.
The reference boot is the classic one: both units as pflash drives, the
store a private copy (QEMU writes to it).

Under IGVM that range is RAM, not flash: OVMF's flash driver finds memory
that behaves as RAM and installs no writable FVB (edk2
OvmfPkg/QemuFlashFvbServicesRuntimeDxe/FwBlockService.c: FvbInitialize, "QEMU
flash was not detected"), and the variables live in RAM (EmuVariableFvbRuntimeDxe).
So the code alone, without its store, boots as well; both must show the same
boot manager as the pflash boot.  TCG only: this suite's KVM cells skip on
hosts whose KVM cannot run OVMF (conftest.fw_accel), and these boots compare
two firmware paths, not accelerators.
"""

from __future__ import annotations

import shutil

import pytest

pytestmark = [pytest.mark.qemu, pytest.mark.platforms("native"), pytest.mark.slow]

CODE, VARS = "ovmf-generic-4m", "ovmf-generic-vars-4m"


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    from harness import assets
    try:
        return assets.info(CODE), assets.info(VARS)
    except assets.AssetMissing as exc:
        pytest.skip(str(exc))


def _wrap(tmp_path, code, store=None):
    from harness.igvm import ovmf, wrap_ovmf
    image = ovmf.load(code.path, None if store is None else store.path)
    out = tmp_path / ("split.igvm" if store else "code-only.igvm")
    out.write_bytes(wrap_ovmf.wrap(image, ("native",), 1))
    return out, image


def _pflash_boot(fw_boot, tmp_path, code, store):
    private = tmp_path / "vars.fd"
    shutil.copyfile(store.path, private)
    return fw_boot(extra=["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code.path}",
                          "-drive", f"if=pflash,format=raw,unit=1,file={private}"],
                   label="pflash")


def test_the_wrapped_pair_lies_where_pflash_maps_it(split, tmp_path):
    code, store = split
    _, image = _wrap(tmp_path, code, store)
    size = code.path.stat().st_size + store.path.stat().st_size
    assert image.size == size
    assert image.base_gpa == (1 << 32) - size
    data = bytes(image.data)
    assert data[:store.path.stat().st_size] == store.path.read_bytes()
    assert data[store.path.stat().st_size:] == code.path.read_bytes()


def test_split_pair_wrap_shows_the_pflash_boot_manager(split, fw_boot, tmp_path, note, settled):
    code, store = split
    note("asset", code.describe())
    note("asset", store.describe())
    wrap, _ = _wrap(tmp_path, code, store)
    via_igvm = settled(fw_boot(igvm=wrap, label="igvm code+vars"))
    via_pflash = settled(_pflash_boot(fw_boot, tmp_path, code, store))
    assert via_igvm == via_pflash


def test_code_without_its_store_boots_from_igvm(split, fw_boot, tmp_path, note, settled):
    code, store = split
    note("asset", code.describe())
    wrap, _ = _wrap(tmp_path, code)
    via_igvm = settled(fw_boot(igvm=wrap, label="igvm code only"))
    via_pflash = settled(_pflash_boot(fw_boot, tmp_path, code, store))
    assert via_igvm == via_pflash
