"""Certification profile checks on the vendor image given with --igvm."""

from __future__ import annotations

import dataclasses

import pytest

from harness.certify import profile


def test_certification(certify_target, certify_check: profile.Planned, record_property):
    check, cells = profile.run_check(certify_target, certify_check)
    record_property("igvm_check", {
        "id": check.id, "name": check.name, "group": check.group,
        "platform": check.platform, "verdict": check.verdict, "message": check.message,
        "evidence": dataclasses.asdict(check.evidence),
    })
    record_property("igvm_cells", [dataclasses.asdict(c) for c in cells])
    if check.verdict in ("fail", "error"):
        pytest.fail(f"{check.id}: {check.verdict}: {check.message}", pytrace=False)
    if check.verdict == "boundary":
        pytest.skip(f"reached hardware boundary: {check.message}")
    if check.verdict == "predicted":
        pytest.skip(f"predicted, not verified on hardware: {check.message}")
    if check.verdict == "skip":
        pytest.skip(check.message)
