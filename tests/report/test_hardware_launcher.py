"""The SEV hardware launcher, exercised to the hardware boundary under TCG."""

from __future__ import annotations

import pytest

from harness.certify import hardware
from harness.igvm.defs import PlatformType
from harness.measure import verify
from harness.qemu import discover, probe

from . import images


@pytest.fixture(scope="module")
def qemu():
    found, notes = discover.find(None)
    path = found.path if found else None
    if path is None:
        pytest.skip("no QEMU with IGVM: " + "; ".join(notes))
    caps = probe.probe(path)
    for cap in ("igvm-cfg", "tcg", "sev-guest"):
        if caps.missing(cap):
            pytest.skip(caps.missing(cap))
    if caps.host.enabled("sev"):
        pytest.skip("this host has SEV: the launch would not stop at the boundary")
    return path


def test_launch_without_sev_hardware_is_launch_failed_with_the_log(tmp_path, qemu):
    image = images.native_hello(tmp_path / "sev.igvm", PlatformType.SEV)
    launch = hardware.launcher(qemu, tmp_path / "work", accel="tcg")
    props = {"qom-type": "sev-guest", "id": "sev0", "policy": 0x1, "cbitpos": 51,
             "reduced-phys-bits": 1}
    with pytest.raises(verify.LaunchFailed) as info:
        with launch(props, str(image)):
            pytest.fail("QEMU under TCG must not reach a QMP prompt with an SEV guest")
    # system/vl.c: TCG cannot make the confidential-guest object ready.
    assert "accelerator does not support confidential guest sev-guest" in info.value.log
    assert "sev-guest,id=sev0,policy=0x1,cbitpos=51,reduced-phys-bits=1" in (
        tmp_path / "work" / next(p.name for p in (tmp_path / "work").iterdir()) /
        "cmdline.txt").read_text()


def test_a_qmp_error_is_the_measurement_layers_error(tmp_path, qemu):
    from harness.qemu.runner import live_runs

    with hardware.capabilities_qmp(qemu, tmp_path / "w2", accel="tcg") as q:
        # No SEV on this host: QEMU answers query-sev-capabilities with an error.
        with pytest.raises(verify.QmpCommandError, match="query-sev-capabilities"):
            q.execute("query-sev-capabilities")
        assert q.execute("query-status")["status"] == "prelaunch"
    assert live_runs() == []
