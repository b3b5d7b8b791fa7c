"""suites/firmware: certification of real OVMF builds wrapped into IGVM (Debian's packages,
installed by ``igvm-harness firmware fetch``), against the QEMU under test.

No check may fail or error on a correct wrap:

* directives: every construct accepted by QEMU 10.2 (SECRETS and CPUID
  pages on SNP by the recorded deviation, harness/expect/data/cases.toml);
* native boot under TCG reaches the firmware's boot manager (a BdsDxe line,
  edk2 OvmfPkg/Library/PlatformBmPrintScLib and PlatformBootManagerLib) --
  OVMF is recognised by its footer GUID, so only OVMF/Linux markers count;
* SEV and SEV-ES stop at the hardware boundary under TCG ("accelerator does
  not support confidential guest", system/vl.c), SEV-SNP earlier
  ("KVM required", guest_memfd) -- boundary, never pass;
* launch measurements are ``predicted``: no SEV firmware measured them here.

Boots of OVMF under TCG take 2-20 s on a loaded 2-core host; the boot ends
at the marker.  Skips name the missing firmware or QEMU.
"""

from __future__ import annotations

import json
import xml.dom.minidom

import pytest

from harness import assets
from harness.certify import profile
from harness.igvm import ovmf, wrap_ovmf
from harness.qemu import discover, probe
from harness.report import writers

PLATFORMS = ("native", "sev", "sev-es", "sev-snp")
#: firmware -> platforms its wrap declares (the AMD SEV build carries the
#: SEV metadata SEV-ES/SNP need; the generic and bookworm builds run natively)
FIRMWARE = {"ovmf-amdsev": PLATFORMS, "ovmf-generic": ("native",),
            "ovmf-bookworm": ("native",)}
BOOT_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def qemu():
    found, notes = discover.find(None)
    if found is None:
        pytest.skip("no QEMU with IGVM: " + "; ".join(notes))
    caps = probe.probe(found.path)
    for cap in ("igvm-cfg", "tcg"):
        if caps.missing(cap):
            pytest.skip(caps.missing(cap))
    if caps.host.enabled("sev"):
        pytest.skip("this host has SEV: these expectations are for a host without it")
    return found.path


def _wrap(name, tmp_path):
    try:
        fd = assets.path(name)
    except assets.AssetMissing as exc:
        pytest.skip(str(exc))
    path = tmp_path / f"{name}.igvm"
    path.write_bytes(wrap_ovmf.wrap(ovmf.load(fd), FIRMWARE[name]))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FIRMWARE))
def test_real_ovmf_wrap_certifies_without_a_false_failure(name, qemu, tmp_path):
    image = _wrap(name, tmp_path)
    target = profile.prepare(image, "auto", qemu=qemu, accel="tcg",
                             boot_timeout=BOOT_TIMEOUT, workdir=tmp_path / "work")
    report = profile.certify(target)
    checks = {c.id: c for c in report.checks}
    bad = {c.id: c.message for c in report.checks if c.verdict in ("fail", "error", "xpass")}
    assert not bad, bad
    assert report.verdict() == "partial"
    assert target.platforms == list(FIRMWARE[name])
    boot = checks["native.boot"]
    assert boot.verdict == "pass", boot.message
    assert "OVMF found in the image" in boot.message
    assert boot.evidence.details["marker"]["payload"] == "ovmf"
    for p in FIRMWARE[name]:
        assert checks[f"{p}.directives"].verdict == "pass", checks[f"{p}.directives"].message
        if p == "native":
            continue
        assert checks[f"{p}.boot"].verdict == "boundary", checks[f"{p}.boot"].message
        assert checks[f"{p}.measurement"].verdict == "predicted"
    if "sev-snp" in FIRMWARE[name]:
        cells = {(c.directive, c.platform): c.verdict for c in report.matrix}
        assert cells[("PAGE_DATA(SECRETS)", "sev-snp")] == "xfail"
        assert cells[("PAGE_DATA(CPUID_DATA)", "sev-snp")] == "xfail"
        assert "KVM required" in checks["sev-snp.boot"].message
        assert ("accelerator does not support confidential guest"
                in checks["sev-es.boot"].message)
    # the reports: JUnit XML parses although OVMF's console is full of
    # escape sequences, and none of them reaches a file
    paths = writers.write_all(report, tmp_path / "reports")
    xml.dom.minidom.parse(str(paths["junit"]))
    for path in paths.values():
        assert "\x1b" not in path.read_text()
    doc = json.loads(paths["json"].read_text())
    assert doc["summary"]["fail"] == 0 and doc["summary"]["predicted"] == len(
        [p for p in FIRMWARE[name] if p != "native"])


@pytest.mark.slow
def test_auto_accel_is_not_failed_by_this_hosts_kvm(qemu, tmp_path):
    """--accel auto picks KVM where usable.  Where this host's (nested) KVM
    stops OVMF with an emulation failure ("KVM internal error. Suberror: 1",
    KVM_INTERNAL_ERROR_EMULATION), that is a limit of the host, not of the
    image: the boot is repeated under TCG and says why."""
    caps = probe.probe(qemu)
    if caps.missing("kvm"):
        pytest.skip(caps.missing("kvm"))
    image = _wrap("ovmf-generic", tmp_path)
    target = profile.prepare(image, "native", qemu=qemu, accel="auto",
                             boot_timeout=BOOT_TIMEOUT, workdir=tmp_path / "work")
    check, _ = profile.run_check(target, next(p for p in profile.plan(target)
                                              if p.id == "native.boot"))
    assert check.verdict == "pass", check.message
    details = check.evidence.details
    if details["accel"] == "tcg":
        assert "emulation failure" in details["kvm_limit"] and "under TCG" in check.message
    else:
        assert details["accel"] == "kvm" and "kvm_limit" not in details
