"""Shared builders for the report tests: synthetic results documents made
from the model (no QEMU needed), with verdicts chosen by the test."""

from __future__ import annotations

import pytest

from harness.report.model import Check, Evidence, Log, MatrixCell, Measurement, Report


def make_env(hostname: str = "lab-a", qemu: str = "10.2.2", accel: str = "kvm") -> dict:
    return {
        "harness_version": "0.1.0",
        "python": "3.11.2",
        "host": {"hostname": hostname, "kernel": "6.9.0", "os": "Debian GNU/Linux 12",
                 "cpu_model": "AMD EPYC 7763", "cpu_vendor": "AuthenticAMD"},
        "qemu": {"path": "/opt/qemu/bin/qemu-system-x86_64", "version": qemu,
                 "probe": {"igvm_cfg": True}, "note": None},
        "accel": accel,
        "sev": {"dev_sev": True, "kvm_amd": {"sev": "Y", "sev_es": "Y", "sev_snp": "N"},
                "api_version": "1.55", "build": 21, "source": "kernel log (ccp driver)"},
        "image": {"path": "vendor.igvm", "sha256": "0" * 63 + "1", "size": 8192},
    }


def make_report(verdicts: dict[str, str], *, hostname: str = "lab-a",
                started: str = "2026-11-20T02:00:00+00:00", qemu: str = "10.2.2") -> Report:
    report = Report("certification", "Certification of vendor.igvm",
                    make_env(hostname, qemu),
                    subject={"name": "vendor.igvm", "platform": "sev-es"},
                    run={"started": started})
    for check_id, verdict in verdicts.items():
        report.checks.append(Check(check_id, check_id.replace(".", " "), verdict,
                                   message=f"{check_id} is {verdict}", group=check_id.split(".")[0],
                                   platform="sev-es"))
    return report


@pytest.fixture
def rich_report() -> Report:
    """A report with every kind of evidence, including text that needs escaping."""
    report = make_report({"spec.validate": "pass", "qemu.lint": "fail"})
    report.checks.append(Check(
        "sev-es.measurement", "Predicted launch measurement", "pass",
        message="SHA-256 over 3 pages and 1 VMSA", platform="sev-es", group="measurement",
        evidence=Evidence(measurements=[Measurement("sev-es", "sha256", "ab" * 32,
                                                    inputs={"vcpus": 1})])))
    report.checks.append(Check(
        "sev-es.boot", "Boot", "boundary", platform="sev-es", group="boot",
        message="QEMU stopped at: accelerator does not support confidential guest",
        evidence=Evidence(command=["qemu-system-x86_64", "-nodefaults"],
                          console="<script>alert(1)</script> & console",
                          logs=[Log("stderr", "qemu-system-x86_64: <err> & more")])))
    report.checks.append(Check("sev-es.vmsa", "VMSA restrictions", "skip",
                               message="no VP context for sev-es", platform="sev-es"))
    report.matrix.append(MatrixCell("PAGE_DATA", "sev-es", "pass", "supported", "supported"))
    report.matrix.append(MatrixCell("VP_CONTEXT", "sev", "fail", "refused", "booted"))
    return report
