"""The certification profile as pytest tests: one test per check.

``pytest suites/ --platform=sev-es --igvm vendor.igvm`` runs the same checks
as ``igvm-harness certify vendor.igvm --platform sev-es`` (the list comes
from :func:`harness.certify.profile.plan`) and, through
:mod:`harness.report.pytest_collect`, writes the JSON/JUnit/HTML reports
(``reports/`` unless ``--igvm-report-dir`` says otherwise).
"""

from __future__ import annotations

import pytest

from harness.certify import profile
from harness.errors import HarnessError

_TARGET = pytest.StashKey[object]()
NO_IMAGE = "no --igvm vendor image given"


def pytest_configure(config: pytest.Config) -> None:
    # The report collector normally comes with the plugin list (pytest11 or
    # -p); when it does not, register it here so a certification run always
    # produces its reports.  Options of a late plugin keep their defaults.
    from harness.report import pytest_collect

    if not config.pluginmanager.is_registered(pytest_collect):
        config.pluginmanager.register(pytest_collect, "harness.report.pytest_collect")


def _target(config: pytest.Config):
    """The prepared target (or the HarnessError that prevented it), once per session."""
    if _TARGET not in config.stash:
        image = config.getoption("igvm")
        if not image:
            config.stash[_TARGET] = None
        else:
            platform = config.getoption("platform")
            try:
                config.stash[_TARGET] = profile.prepare(
                    image, platform, qemu=config.getoption("qemu"),
                    accel=config.getoption("accel"),
                    boot_timeout=config.getoption("boot_timeout"),
                    expect_console=config.getoption("expect_console"),
                    disk=config.getoption("disk"))
            except HarnessError as exc:
                config.stash[_TARGET] = exc
    return config.stash[_TARGET]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "certify_check" not in metafunc.fixturenames:
        return
    target = _target(metafunc.config)
    if target is None or isinstance(target, HarnessError):
        metafunc.parametrize("certify_check", [None], ids=["profile"])
        return
    steps = profile.plan(target)
    metafunc.parametrize("certify_check", steps, ids=[s.id for s in steps])


@pytest.fixture
def certify_target(request: pytest.FixtureRequest):
    target = _target(request.config)
    if target is None:
        pytest.skip(NO_IMAGE)
    if isinstance(target, HarnessError):
        pytest.fail(f"cannot certify {request.config.getoption('igvm')}: {target}",
                    pytrace=False)
    return target
