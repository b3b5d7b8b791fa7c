"""Run one matrix cell: decide how it can run on this host, build its
fixture, start QEMU through the runner, and judge the outcome.

How a cell runs (:func:`plan`):

* NATIVE: under the accelerator asked for (``auto``: KVM when usable, else
  TCG), to the end;
* SEV, SEV-ES, SEV-SNP on a host that can run them (the probe): under KVM
  with the ``sev-guest`` / ``sev-snp-guest`` object, to the end;
* otherwise under TCG with the same object: QEMU stops at the platform's
  hardware boundary (harness/expect/data/platforms.toml), and expectations
  decided beyond it are judged as "reached hardware boundary".
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.expect import verdict as V
from harness.expect.table import Boundary, Table
from harness.matrix import recipes
from harness.matrix.cells import Cell

CELL_TIMEOUT = 20.0
#: The watch of a cell whose only accepting expectation is "loads" (QEMU
#: loads the file and runs the guest: verdict.matches accepts BOOTED, HUNG
#: and STOPPED alike): there is no guest line to wait for, so the run
#: ends after this long -- QEMU built the machine from the file and the
#: guest ran for seconds without QEMU refusing or crashing.  A refusal
#: comes at once (QEMU reads the file while it builds the machine).
LOADS_WATCH = 3.0


def cell_timeout(doc: V.Effective, dev: V.Effective | None) -> float:
    """The deadline of a cell's run: LOADS_WATCH where no expectation
    waits for the guest's own report, CELL_TIMEOUT otherwise."""
    outcomes = {doc.outcome} | ({dev.outcome} if dev is not None else set())
    return LOADS_WATCH if "loads" in outcomes and "boots" not in outcomes else CELL_TIMEOUT


@dataclass
class Plan:
    accel: str
    boundary: Boundary | None
    mode: str                      # native-kvm, native-tcg, hardware, tcg-fallback
    skip: str | None = None


@dataclass
class Env:
    """What the host offers: the QEMU under test and its probe."""

    qemu: str
    caps: Any                      # harness.qemu.probe.Capabilities
    table: Table
    accel: str = "auto"            # --accel
    guests: dict = field(default_factory=dict)

    @property
    def version(self) -> str | None:
        return getattr(self.caps, "version", None)


@dataclass
class CellResult:
    cell_id: str
    case: str
    title: str
    header: list[str]
    form: str
    platform: str
    syntax: str
    rule: str | None
    mode: str
    status: str
    expected: str = ""
    observed: str = ""
    reason: str = ""
    source: list[str] = field(default_factory=list)
    reference: list[str] = field(default_factory=list)
    error_line: str = ""
    log_dir: str | None = None
    argv: list[str] = field(default_factory=list)
    duration: float = 0.0
    fixture: str = ""
    note: str = ""
    preamble: str = ""              # harness.matrix.preamble: what the run ran

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def plan(cell: Cell, env: Env) -> Plan:
    caps = env.caps
    if cell.syntax == "sev-guest" and not getattr(caps, "early_igvm_file", False):
        return Plan("tcg", None, "n/a", "QEMU lacks sev-guest igvm-file property "
                                       "(early IGVM syntax)")
    if cell.platform == "native":
        accel = env.accel if env.accel != "auto" else ("kvm" if caps.has("kvm") else "tcg")
        why = caps.missing(accel)
        return Plan(accel, None, f"native-{accel}", why)
    obj = env.table.platforms[cell.platform].object_type
    why = caps.missing(obj)
    if why:
        return Plan("tcg", None, "n/a", why)
    if caps.has(cell.platform) and env.accel in ("auto", "kvm"):
        return Plan("kvm", None, "hardware")
    why = caps.missing("tcg")
    if why:
        return Plan("tcg", None, "n/a", f"no SEV hardware and {why}")
    return Plan("tcg", env.table.platforms[cell.platform].boundary, "tcg-fallback")


def _result(cell: Cell, mode: str, status: str, **kw) -> CellResult:
    c = cell.case
    return CellResult(cell_id=cell.id, case=c.id, title=c.title, header=list(c.header),
                      form=c.form, platform=cell.platform, syntax=cell.syntax, rule=cell.rule,
                      mode=mode, status=status, **kw)


def _host_sev_bits(env: Env, p: Plan) -> tuple[int, int]:
    """(cbitpos, reduced-phys-bits) for the SEV object: the host's CPUID
    0x8000001F (EBX[5:0], EBX[11:6]) on SEV hardware, where QEMU checks
    them (target/i386/sev.c sev_common_kvm_init); fixed values under TCG,
    where nothing checks them."""
    host = getattr(env.caps, "host", None)
    cpuid = getattr(host, "cpuid", None) or {}
    if p.mode == "hardware" and cpuid.get("cbitpos"):
        return int(cpuid["cbitpos"]), int(cpuid.get("phys_addr_reduction") or 1)
    return recipes.DEFAULT_CBIT, 1


def observed_from(outcome, fixture: recipes.Fixture) -> V.Observed:
    """The runner's Outcome as the verdict engine sees it.  The runner's own
    BOUNDARY classification is treated as an abort: the engine decides from
    the expectation data whether that abort is the predicted boundary."""
    kind = outcome.status.value
    if kind == "BOUNDARY":
        kind = V.ABORTED
    stderr = ""
    if outcome.run_dir is not None:
        try:
            stderr = (Path(outcome.run_dir) / "stderr.log").read_text(errors="replace")
        except OSError:
            stderr = ""
    report: dict[str, str] = {}
    for rec in outcome.report:
        for k, v in rec.fields.items():
            report[f"{rec.kind}.{k}"] = str(v)
    return V.Observed(kind=kind, exit_status=outcome.exit_code, error_line=outcome.error or "",
                      stderr=stderr, report=report,
                      booted_ok=(outcome.guest_status == fixture.expect_status),
                      console_tail=outcome.tail(5), log_dir=str(outcome.run_dir or ""),
                      detail=outcome.error or "")


@dataclass
class Prepared:
    """One cell ready to run: what run_cell starts, and what the lab
    preamble (harness.matrix.preamble) shows -- built once, for both."""

    plan: Plan
    exp: Any
    doc: V.Effective
    dev: V.Effective | None
    fixture: recipes.Fixture
    cmd: Any                       # harness.qemu.cmdline.QemuCommand
    cbit: int
    reduced: int
    preamble: str = ""


def prepare(cell: Cell, env: Env, workdir: Path, p: Plan | None = None,
            sev_bits: tuple[int, int] | None = None, model: bool | None = None) -> Prepared | CellResult:
    """Plan (``p``: the host's unless given), expectation, fixture and QEMU
    command of one cell, and its preamble; a CellResult when the cell does
    not run (skip, suite error).  ``sev_bits`` overrides the (cbitpos,
    reduced-phys-bits) the host gives; ``model`` runs the GHCB model for the
    preamble (default: when the cell boots an SEV-ES/SNP guest on hardware)."""
    from harness.matrix import preamble as P
    from harness.qemu.cmdline import ConfidentialGuest, QemuCommand

    p = p or plan(cell, env)
    exp = cell.case.expectation(cell.platform, env.version) if not p.skip else None
    if p.skip or exp is None:
        reason = p.skip or f"no expectation recorded for QEMU {env.version} on {cell.platform}"
        return _result(cell, p.mode, V.SKIP, reason=reason,
                       preamble=P.render(cell, p.mode, p.accel, "(not run)", skip=reason))
    doc, dev = V.effective_pair(exp, p.boundary, env.version)
    expected = doc.describe() + (f"; known deviation: {dev.describe()} (xfail)" if dev else "")
    expected += f" [{'; '.join(doc.source)}]" if doc.source else ""
    workdir.mkdir(parents=True, exist_ok=True)
    cbit, reduced = sev_bits or _host_sev_bits(env, p)
    try:
        fx = recipes.build(cell.case.recipe, recipes.Context(
            case_id=cell.case.id, form=cell.case.form, platform=cell.platform,
            params=cell.case.params, workdir=workdir, guests=env.guests, cbit=cbit,
            rule=cell.rule))
    except HarnessError as exc:
        reason = f"fixture not built: {exc}"
        return _result(cell, p.mode, V.SUITE_ERROR, expected=doc.describe(), reason=reason,
                       source=list(doc.source),
                       preamble=P.render(cell, p.mode, p.accel, expected, skip=reason))
    cgs = None
    platform = env.table.platforms[cell.platform]
    if platform.object_type:
        props = dict(platform.properties)
        policy = int(props.pop("policy"), 0) if "policy" in props else None
        cgs = ConfidentialGuest(type=platform.object_type, policy=policy, cbitpos=cbit,
                                reduced_phys_bits=reduced, properties=props)
    cmd = QemuCommand(binary=env.qemu, machine="q35", accel=p.accel, memory="256M",
                      smp=cell.case.smp, igvm=str(fx.igvm_path), igvm_syntax=cell.syntax,
                      confidential=cgs, extra=list(fx.extra_args))
    prep = Prepared(p, exp, doc, dev, fx, cmd, cbit, reduced)
    accepted = (dev or doc).outcome in ("boots", "loads")
    digest = model_line = None
    if cell.platform in P.MEASURED and accepted and fx.igvm_path.is_file():
        digest = P.predicted_digest(fx.igvm_path, cell.platform, cell.case.smp,
                                    cgs.policy if cgs else None, cmd.cpu)
    if model is None:
        model = p.mode == "hardware" and (dev or doc).outcome == "boots"
    if model and cell.platform in P.MODELLED and fx.igvm_path.is_file():
        model_line = P.model_line(fx.igvm_path, cell.platform, cell.case.smp, cbit, reduced,
                                  fx.expect_status)
    prep.preamble = P.render(cell, p.mode, p.accel, expected, cmd=cmd, fixture=fx, workdir=workdir,
                             digest=digest, model=model_line)
    return prep


def run_cell(cell: Cell, env: Env, workdir: Path) -> CellResult:
    """Plan, build, run and judge one cell (never raises for QEMU's sake;
    a fixture that cannot be built is a suite-error result).  The cell's
    preamble is kept in the result and written as ``preamble.txt`` into
    ``workdir`` before QEMU starts."""
    from harness.qemu import runner

    prep = prepare(cell, env, workdir)
    if isinstance(prep, CellResult):
        return prep
    p, exp, doc, dev, fx, cmd = prep.plan, prep.exp, prep.doc, prep.dev, prep.fixture, prep.cmd
    try:
        (workdir / "preamble.txt").write_text(prep.preamble)
    except OSError:
        pass
    t0 = time.monotonic()
    try:
        outcome = runner.run(cmd, workdir / "run", timeout=cell_timeout(doc, dev))
    except HarnessError as exc:
        return _result(cell, p.mode, V.SUITE_ERROR, expected=doc.describe(),
                       reason=f"QEMU could not be run: {exc}", source=list(doc.source),
                       fixture=fx.description, preamble=prep.preamble)
    obs = observed_from(outcome, fx)
    v = V.judge(doc, dev, obs, exp.deviation.reason if exp.deviation else "")
    return _result(cell, p.mode, v.status, expected=v.expected, observed=v.observed,
                   reason=v.reason, source=list(v.source), reference=list(v.reference),
                   error_line=obs.error_line, log_dir=obs.log_dir, argv=outcome.argv,
                   duration=time.monotonic() - t0, fixture=fx.description, note=exp.note,
                   preamble=prep.preamble)
