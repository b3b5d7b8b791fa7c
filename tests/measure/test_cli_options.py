"""``igvm-harness measure`` option ranges: values the firmware cannot receive
are usage errors (exit 2, one line), not digests of impossible launches.

Widths: CPUID.1:EAX is 32 bits (the CPU signature KVM puts in the VMSA's
RDX); QEMU declares sev-guest ``policy`` as a uint32 and sev-snp-guest
``policy`` as a uint64 (target/i386/sev.c: sev_guest_instance_init,
sev_snp_guest_class_init); KVM_X86_SEV_VMSA_FEATURES is a u64 attribute.
"""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import PlatformType


@pytest.fixture
def sev_es_image(tmp_path):
    b = IgvmBuilder()
    b.platform(PlatformType.SEV_ES)
    b.pages(0x100000, b"\x90" * 4096)
    path = tmp_path / "es.igvm"
    path.write_bytes(b.build())
    return path


@pytest.mark.parametrize("option, value", [
    ("--cpu-signature", "-1"),
    ("--cpu-signature", "0x100000000"),
    ("--policy", "-1"),
    ("--policy", "0x10000000000000000"),
    ("--supported-sev-features", "-5"),
    ("--supported-sev-features", "0x10000000000000000"),
])
def test_out_of_range_values_are_usage_errors(sev_es_image, capsys, option, value):
    with pytest.raises(SystemExit) as exc:
        main(["measure", "--platform", "sev-es", option, value, str(sev_es_image)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "unsigned value" in err and "Traceback" not in err


def test_sev_es_policy_is_32_bit(sev_es_image, capsys):
    rc = main(["measure", "--platform", "sev-es", "--policy", "0x100000000", str(sev_es_image)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("igvm-harness: --policy 0x100000000 does not fit")
    assert err.count("\n") == 1


def test_edges_of_the_ranges_are_accepted(sev_es_image, capsys):
    rc = main(["measure", "--platform", "sev-es", "--policy", "0xffffffff", "--cpu-signature",
               "0xffffffff", "--supported-sev-features", "0", str(sev_es_image)])
    out = capsys.readouterr().out
    assert rc == 0 and "policy=0xffffffff" in out and "cpu-signature=0xffffffff" in out


@pytest.mark.parametrize("value", ["0", "4097", "10000000"])
def test_vcpus_beyond_qemus_q35_limit_are_usage_errors(sev_es_image, capsys, value):
    """hw/i386/pc_q35.c (QEMU 10.2): pc_q35_machine_options sets max_cpus = 4096.
    (Ten million vCPUs used to run for minutes and print every one.)"""
    with pytest.raises(SystemExit) as exc:
        main(["measure", "--platform", "sev-es", "--vcpus", value, str(sev_es_image)])
    assert exc.value.code == 2 and "must be 1 to 4096" in capsys.readouterr().err


def test_vcpus_at_the_limit_are_measured(sev_es_image, capsys):
    rc = main(["measure", "--platform", "sev-es", "--vcpus", "4096", str(sev_es_image)])
    assert rc == 0 and "vcpus=4096" in capsys.readouterr().out
