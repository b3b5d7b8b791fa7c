"""Avocado-instrumented wrappers (see :mod:`harness.avocado` for why and how).

This file is read by Avocado's resolver; it needs ``avocado-framework``
(the ``[avocado]`` extra) and is not imported by the rest of the harness.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from avocado import Test
from avocado.utils import process

from harness.errors import HarnessError

REPO = Path(__file__).resolve().parents[2]


class IgvmCertify(Test):
    """Certification profile on a vendor image.

    :avocado: tags=igvm,certify
    """

    def test(self) -> None:
        from harness.certify import profile
        from harness.report import writers
        from harness.report.model import OPEN

        image = self.params.get("igvm", default=None)
        if not image:
            self.cancel("no igvm parameter: run with -p igvm=FILE")
        try:
            target = profile.prepare(
                image, self.params.get("platform", default="auto"),
                qemu=self.params.get("qemu", default=None),
                accel=self.params.get("accel", default="auto"),
                boot=str(self.params.get("boot", default="yes")).lower() not in ("no", "0"),
                workdir=Path(self.outputdir) / "work",
                expect_console=self.params.get("expect_console", default=None),
                disk=self.params.get("disk", default=None))
        except HarnessError as exc:
            self.error(str(exc))

        def progress(index, total, planned, check):
            if check is not None:
                self.log.info("[%d/%d] %s: %s %s", index, total, check.id, check.verdict,
                              check.message)

        report = profile.certify(target, progress)
        paths = writers.write_all(report, self.outputdir)
        self.log.info("reports: %s", ", ".join(str(p) for p in paths.values()))
        failed = [c for c in report.checks if c.verdict in ("fail", "error", "xpass")]
        if failed:
            self.fail("; ".join(f"{c.id}: {c.message}" for c in failed))
        open_checks = [c for c in report.checks if c.verdict in OPEN]
        if open_checks:
            self.log.warning("not decided on this host: %s",
                             ", ".join(f"{c.id} ({c.verdict})" for c in open_checks))


class IgvmSuite(Test):
    """The pytest conformance suite for one platform/accelerator.

    :avocado: tags=igvm,suite
    """

    def test(self) -> None:
        out = Path(self.outputdir)
        from harness.report.matrix_run import collector_args

        cmd = [sys.executable, "-m", "pytest", self.params.get("suites", default=str(REPO / "suites")),
               *collector_args(), "-p", "no:cacheprovider", "-q",
               "--platform", self.params.get("platform", default="auto"),
               "--accel", self.params.get("accel", default="auto"),
               "--igvm-report-dir", str(out), "--junit-xml", str(out / "pytest-junit.xml")]
        qemu = self.params.get("qemu", default=None)
        if qemu:
            cmd += ["--qemu", qemu]
        result = process.run(shlex.join(cmd), ignore_status=True, shell=False,
                             timeout=float(self.params.get("timeout", default=3600)))
        docs = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
        for doc in docs:
            self.log.info("%s: %s", doc["title"], doc["summary"])
        if result.exit_status not in (0, 5) or any(d["summary"]["verdict"] == "fail"
                                                   for d in docs):
            self.fail(f"pytest exit status {result.exit_status}; see the reports in {out}")
