"""Every malformed file the mutators (harness/igvm/mutate.py) make of a real
OVMF wrap is refused -- or, for the specification rules the igvm parser QEMU
uses does not enforce, accepted -- exactly as the matrix's small fixture
broken the same way (suites/matrix: cases ``malformed`` and
``malformed-spec-only`` of harness/expect/data/cases.toml).

Both files are judged by the same expectation and verdict engine
(harness.expect.verdict); the verdicts must agree, and so must QEMU's error
line.  A wrap QEMU accepts would run OVMF for ever, so these runs stop once
QEMU has answered QMP with the machine created (``-S``: QEMU reads the IGVM
file while it builds the machine, before its main loop dispatches the first
QMP command) -- the "loads" expectation, seen without waiting for a guest.
"""

from __future__ import annotations

import re

import pytest

from harness.expect import verdict as V
from harness.matrix.cells import Cell, mutator_rules

pytestmark = [pytest.mark.qemu]

RULES = mutator_rules("*")
STRICT = set(mutator_rules("strict"))
#: The mutated file is a wrap for all four platforms, run on each (under
#: TCG, SEV and SEV-ES read the file before their boundary; SEV-SNP stops
#: before it, like the small fixture) for the SEV build, and natively for
#: the other builds (same kinds of headers; 51 rules x 4 platforms is a
#: minute of QEMU runs per build).
ALL_PLATFORMS = ("native", "sev", "sev-es", "sev-snp")
EVERY_PLATFORM_ON = "ovmf-amdsev"


def _cells():
    from harness import assets
    out = []
    for name in assets.firmware_names():
        for platform in ALL_PLATFORMS if name == EVERY_PLATFORM_ON else ("native",):
            out += [pytest.param(name, platform, rule, id=f"{name}-{platform}-{rule}",
                                 marks=pytest.mark.igvm_platform(platform))
                    for rule in RULES]
    return out


RUN_TIMEOUT = 60.0

_SMALL: dict = {}
#: (OVMF build, rule) -> the mutated four-platform wrap, written once and run
#: on each platform (the same bytes: mutators are deterministic).
_MUTATED: dict = {}


def _mutated(fw, rule: str, tmp_path_factory):
    from harness.igvm.mutate import MUTATORS
    key = (fw.name, rule)
    if key not in _MUTATED:
        path = tmp_path_factory.mktemp("mutated") / f"{fw.name}-{rule}.igvm"
        path.write_bytes(MUTATORS[rule](fw.wrap(ALL_PLATFORMS).read_bytes()))
        _MUTATED[key] = path
    return _MUTATED[key]


@pytest.fixture(scope="session")
def matrix_env(qemu_binary, qemu_caps, expect_table):
    from harness.errors import HarnessError
    from harness.matrix.execute import Env
    from harness.matrix.guests import guest_images
    try:
        guests = guest_images()
    except HarnessError as exc:
        pytest.fail(f"matrix guest payloads cannot be built: {exc}", pytrace=False)
    return Env(qemu=qemu_binary, caps=qemu_caps, table=expect_table, accel="tcg", guests=guests)


def _accepted_then_quit(qr) -> None:
    """QEMU answered with the machine built: the file was accepted."""
    qr.prelaunch["status"] = qr.command("query-status").get("status")
    qr.command("quit")


def _path_free(line: str) -> str:
    return re.sub(r"\S+\.igvm", "FILE", line or "")


def _code_free(line: str) -> str:
    """QEMU's message without the igvm library's error code
    (backends/igvm.c qigvm_file_init: "Unable to parse IGVM file %s: %d")."""
    return re.sub(r": -?\d+$", "", line)


@pytest.mark.parametrize("fw,platform,rule", _cells(), indirect=["fw"])
def test_mutated_wrap_is_judged_like_the_small_fixture(fw, platform, rule, matrix_env,
                                                       expect_table, cgs_for, new_run_dir,
                                                       tmp_path, tmp_path_factory):
    from harness.matrix import execute, recipes
    from harness.qemu import runner
    from harness.qemu.cmdline import QemuCommand

    case = expect_table.case("malformed-spec-only" if rule in STRICT else "malformed")
    cell = Cell(case, platform, "cfg", rule)
    plan = execute.plan(cell, matrix_env)
    if plan.skip:
        pytest.skip(plan.skip)
    if (platform, rule) not in _SMALL:
        _SMALL[(platform, rule)] = execute.run_cell(cell, matrix_env, tmp_path / "small")
    small = _SMALL[(platform, rule)]
    assert small.status not in (V.FAIL, V.SUITE_ERROR), f"small fixture: {small.reason}"

    bad = _mutated(fw, rule, tmp_path_factory)
    exp = case.expectation(platform, matrix_env.version)
    doc, dev = V.effective_pair(exp, plan.boundary, matrix_env.version)
    cgs = cgs_for(platform, plan.mode == "hardware") if platform != "native" else None
    cmd = QemuCommand(matrix_env.qemu, accel=plan.accel, memory="256M",
                      igvm=str(bad), confidential=cgs)
    out = runner.run(cmd, new_run_dir(), timeout=RUN_TIMEOUT, prelaunch=_accepted_then_quit)
    obs = execute.observed_from(out, recipes.Fixture(bad))
    got = V.judge(doc, dev, obs, exp.deviation.reason if exp.deviation else "")

    assert got.status == small.status, (
        f"real wrap: {got.status} ({got.observed}); small fixture: {small.status}"
        f" ({small.observed}); expected: {got.expected}")
    if obs.kind == V.ABORTED:
        ours, theirs = _path_free(obs.error_line), _path_free(small.error_line)
        if ours != theirs:
            # The same refusal with another library code: only when the fault
            # broke a second rule in the bigger file, which the parser met
            # first (e.g. no platform left for the wrap's SEV-ES VMSAs).
            from harness.igvm.validate import validate
            assert _code_free(ours) == _code_free(theirs), (ours, theirs)
            broken = {v.rule for v in validate(bad.read_bytes(), strict=True)}
            assert broken - {rule}, (ours, theirs, broken)
    else:   # accepted: QEMU answered QMP with the machine built, before any guest code
        assert out.prelaunch.get("status") == "prelaunch", out.summary()
