"""Vendor certification: the profile of checks an IGVM image goes through.

Layering: certify sits above the format, measurement, QEMU and expectation
layers, which it imports directly, and uses the report model; the report
layer never imports it.  Modules: :mod:`~harness.certify.model` (Target,
Outcome), :mod:`~harness.certify.checks` and :mod:`~harness.certify.boot`
(the checks), :mod:`~harness.certify.console` (what "booted" means),
:mod:`~harness.certify.hardware` (verification on SEV hosts) and
:mod:`~harness.certify.profile` (plans and runs them; imports the others,
none imports it).  Entry points: the ``igvm-harness certify`` command
(:mod:`harness.certify.commands`), the pytest suite ``suites/certify`` and
the Avocado wrapper ``harness/avocado``.
"""
