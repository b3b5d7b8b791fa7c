"""The boot check against the real QEMU under test (skips name what is missing)."""

from __future__ import annotations

import pytest

from harness.certify import adapters, profile
from harness.igvm.defs import PlatformType

from . import images


@pytest.fixture(scope="module")
def qemu():
    path, notes = adapters.find_qemu(None)
    if path is None:
        pytest.skip("no QEMU with IGVM: " + "; ".join(notes))
    caps = adapters.probe(path)
    for cap in ("igvm-cfg", "tcg"):
        if caps.missing(cap):
            pytest.skip(caps.missing(cap))
    return path


def _boot(tmp_path, image, platform, qemu, accel="tcg"):
    target = profile.prepare(image, platform, qemu=qemu, accel=accel, boot_timeout=20,
                             workdir=tmp_path / "work")
    step = next(p for p in profile.plan(target) if p.id == f"{platform}.boot")
    check, _ = profile.run_check(target, step)
    return check


def test_native_image_boots_and_its_console_is_evidence(tmp_path, qemu):
    image = images.native_hello(tmp_path / "hello.igvm")
    check = _boot(tmp_path, image, "native", qemu)
    assert check.verdict == "pass", check.message
    # The guest code wrote "OK\n" and isa-debug-exit value 0 -> exit status 1.
    assert check.evidence.console.startswith("OK")
    assert check.evidence.details["outcome"]["exit_code"] == 1
    assert "-nodefaults" in check.evidence.command


def test_panicking_image_fails_at_once(tmp_path, qemu):
    # A guest that reports a panic must fail the boot check, quickly (the
    # runner sees GUEST_PANICKED/STOP over QMP), not pass or time out.
    image = images.native_panic(tmp_path / "panic.igvm")
    check = _boot(tmp_path, image, "native", qemu)
    assert check.verdict == "fail", check.message
    assert "guest-panicked" in check.message
    assert check.evidence.details["outcome"]["status"] == "STOPPED"


def test_sev_es_without_hardware_stops_at_the_boundary(tmp_path, qemu):
    image = images.native_hello(tmp_path / "es.igvm", PlatformType.SEV_ES)
    check = _boot(tmp_path, image, "sev-es", qemu)
    if check.evidence.details.get("on_hardware"):
        pytest.skip("this host has SEV-ES: the boot runs to the end")
    # system/vl.c: TCG cannot make a confidential guest object ready.
    assert check.verdict == "boundary", check.message
    assert "accelerator does not support confidential guest" in check.message
    assert any("sev-guest" in arg for arg in check.evidence.command)


def test_broken_image_is_refused_by_qemu(tmp_path, qemu):
    # Without a confidential guest, QEMU takes a VP context for the boot CPU
    # only: "context can be set for BSP only" (target/i386/igvm.c:
    # qigvm_x86_set_vp_context, called from backends/igvm.c).
    from harness.igvm.builder import IgvmBuilder

    b = IgvmBuilder()
    b.platform(PlatformType.NATIVE)
    b.page(0xFFFFF000, images.reset_page())
    b.vp_context(0x1000, bytes(232), vp_index=1)
    image = tmp_path / "ap.igvm"
    b.write(image)
    check = _boot(tmp_path, image, "native", qemu)
    assert check.verdict == "fail"
    assert check.message.startswith("QEMU refused the image:")
    assert "context can be set for BSP only" in check.message


def test_sev_snp_without_kvm_stops_before_reading_the_file(tmp_path, qemu):
    # sev-snp-guest needs guest_memfd, i.e. KVM: under TCG QEMU stops while
    # creating guest memory (system/physmem.c: ram_block_add).
    image = images.native_hello(tmp_path / "snp.igvm", PlatformType.SEV_SNP)
    check = _boot(tmp_path, image, "sev-snp", qemu)
    if check.evidence.details.get("on_hardware"):
        pytest.skip("this host has SEV-SNP: the boot runs to the end")
    assert check.verdict == "boundary", check.message
    assert "KVM required" in check.message
