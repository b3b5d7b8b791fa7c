"""The lean build's device list (harness/qemu/devices.py) and how the build uses it.

Where QEMU's source tree is in the harness cache (the build unpacks it under
``qemu/work/``), the list is also run through QEMU's own Kconfig resolver
(scripts/minikconf.py with ``--allnoconfig``, as meson.build does for
``--without-default-devices``) to check that what the suites need comes out
of it, and that the default set's extras do not.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.qemu import build, devices

#: Symbols the harness's QEMU use depends on, from QEMU's Kconfig and board code,
#: independent of how devices.py spells its list: the boards (hw/i386/Kconfig),
#: q35's built-in chipset (hw/i386/pc_q35.c pc_q35_init: ICH9 LPC, the MCH PCIe host,
#: ich9-ahci, the ICH9 SMBus), fw_cfg DMA, pflash (pc_sysfw.c), the COM1 UART,
#: isa-debug-exit, the ISA pvpanic, -device loader, the HPET pc_machine_initfn
#: enables, SEV and the OVMF metadata reader (pc_sysfw_ovmf.c).
NEEDED = ("Q35", "I440FX", "LPC_ICH9", "PCI_EXPRESS_Q35", "AHCI_ICH9", "ACPI_ICH9", "SMBUS",
          "FW_CFG_DMA", "PFLASH_CFI01", "SERIAL_ISA", "ISA_DEBUG", "PVPANIC_ISA",
          "GENERIC_LOADER", "HPET", "SEV", "X86_FW_OVMF", "MC146818RTC", "IOAPIC", "APIC",
          "CXL")  # CXL: hw/acpi/cxl.c (ACPI_X86 selects ACPI_CXL) needs hw/cxl/cxl-host.c to link
#: A few of the defaults the lean set leaves out (configs/devices/i386-softmmu/default.mak
#: and the 'imply' lines of PC/Q35 in hw/i386/Kconfig).
LEFT_OUT = ("E1000_PCI", "E1000E_PCI_EXPRESS", "VIRTIO_NET", "VGA_PCI", "USB_XHCI", "HDA",
            "XEN_EMU", "VTD", "AMD_IOMMU", "IPMI", "NVME_PCI", "VIRTIO_BLK", "ISAPC", "TDX")


def test_every_entry_says_why_and_is_a_plain_symbol():
    assert devices.DEVICES
    for d in devices.DEVICES:
        assert re.fullmatch(r"[A-Z0-9_]+", d.symbol), d.symbol
        assert len(d.why) > 20, d.symbol
    assert len({d.symbol for d in devices.DEVICES}) == len(devices.DEVICES)


def test_mak_text_is_qemu_devices_syntax():
    """configs/devices/*.mak: ``CONFIG_X=y`` lines and ``#`` comments only."""
    lines = [ln for ln in devices.mak_text().splitlines() if ln and not ln.startswith("#")]
    assert lines == [f"CONFIG_{d.symbol}=y" for d in devices.DEVICES]


def test_config_name_follows_the_content():
    other = devices.DEVICES[:-1]
    assert devices.config_name() != devices.config_name(other)
    assert devices.config_name() == devices.config_name()
    assert re.fullmatch(r"igvm-harness-[0-9a-f]{12}", devices.config_name())


def test_lean_options_are_a_different_cache_key():
    assert build.LEAN_OPTIONS[:len(build.CONFIGURE_OPTIONS)] == build.CONFIGURE_OPTIONS
    assert "--without-default-devices" in build.LEAN_OPTIONS
    assert build.cache_key("v", "s", "l", build.LEAN_OPTIONS) != \
        build.cache_key("v", "s", "l", build.CONFIGURE_OPTIONS)


def test_lean_is_the_default_and_all_devices_the_option():
    import inspect

    from harness.cli import build_parser

    assert build.DEFAULT_OPTIONS == build.LEAN_OPTIONS
    assert inspect.signature(build.build).parameters["options"].default == build.LEAN_OPTIONS
    args = build_parser().parse_args(["qemu", "build", "--all-devices"])
    assert args.all_devices and not args.lean
    args = build_parser().parse_args(["qemu", "build"])
    assert not args.all_devices


def test_write_device_config(tmp_path):
    tree = tmp_path / "qemu"
    (tree / "configs" / "devices" / "x86_64-softmmu").mkdir(parents=True)
    assert build.write_device_config(tree, build.CONFIGURE_OPTIONS) is None
    path = build.write_device_config(tree, build.LEAN_OPTIONS)
    assert path == tree / "configs/devices/x86_64-softmmu" / f"{devices.config_name()}.mak"
    assert path.read_text() == devices.mak_text()
    with pytest.raises(HarnessError, match="does not have"):
        build.write_device_config(tree, ("--with-devices-x86_64=igvm-harness-000000000000",))
    assert build.write_device_config(tmp_path / "bare", build.LEAN_OPTIONS).is_file()


def test_compiler_env_uses_ccache_only_when_present(tmp_path, monkeypatch):
    monkeypatch.setattr(build.shutil, "which", lambda name: "/usr/bin/ccache")
    env = build.compiler_env(tmp_path, {"PATH": "/usr/bin"})
    assert env["CC"] == "ccache cc" and env["CCACHE_DIR"] == str(tmp_path / "ccache")
    assert build.compiler_env(tmp_path, {"CC": "clang"}) == {"CC": "clang"}  # the user's choice
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    assert build.compiler_env(tmp_path, {"PATH": "/usr/bin"}) == {"PATH": "/usr/bin"}


def _qemu_tree() -> Path | None:
    for kc in sorted(build.cache_root().glob("qemu/work/*/src/qemu-*/scripts/minikconf.py")):
        return kc.parents[1]
    return None


def _resolve(tree: Path, mode: str, mak: Path) -> set[str]:
    """QEMU's minikconf on ``mak`` for x86_64 with KVM and TCG (the host/target
    symbols meson.build passes: host_kconfig, target_kconfig)."""
    res = subprocess.run([sys.executable, "scripts/minikconf.py", mode, "/dev/null", "/dev/null",
                          str(mak), "Kconfig", "CONFIG_KVM=y", "CONFIG_TCG=y", "CONFIG_LINUX=y",
                          "CONFIG_I386=y", "CONFIG_X86_64=y", "CONFIG_TARGET_BIG_ENDIAN=n"],
                         cwd=tree, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-500:]
    return {m.group(1) for m in re.finditer(r"^CONFIG_(\w+)=y$", res.stdout, re.M)}


def test_qemu_kconfig_resolves_the_lean_list(tmp_path):
    tree = _qemu_tree()
    if tree is None:
        pytest.skip(f"no QEMU source tree under {build.cache_root() / 'qemu' / 'work'} "
                    "(run `igvm-harness qemu build`)")
    mak = tmp_path / "lean.mak"
    mak.write_text(devices.mak_text())
    lean = _resolve(tree, "--allnoconfig", mak)
    default = _resolve(tree, "--defconfig", tree / "configs/devices/x86_64-softmmu/default.mak")
    missing = [s for s in NEEDED if s not in lean]
    assert not missing, f"the lean device set lacks {missing}"
    assert not [s for s in LEFT_OUT if s in lean]
    assert all(s in default for s in LEFT_OUT + NEEDED)  # the comparison is meaningful
    assert lean < default and len(lean) < len(default) // 2
