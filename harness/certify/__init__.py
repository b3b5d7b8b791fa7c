"""Vendor certification: the profile of checks an IGVM image goes through.

Layering: certify sits above the format, measurement, QEMU and expectation
layers (reached through :mod:`harness.certify.adapters`) and uses the report
model; the report renderers never import it.  Entry points: the
``igvm-harness certify`` command (:mod:`harness.report.commands`), the pytest
suite ``suites/certify`` and the Avocado wrapper ``harness/avocado``.
"""
