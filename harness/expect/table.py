"""The expectation tables: QEMU's documented and coded IGVM behaviour as data.

``data/cases.toml`` holds one ``[[case]]`` per IGVM construct under test
(header type x form), each with the expected QEMU outcome per platform
(``native``, ``sev``, ``sev-es``, ``sev-snp``); ``data/platforms.toml``
holds per platform the confidential-guest object and, for hosts without the
hardware, the *boundary*: how far QEMU gets under TCG and the error it stops
with there; ``data/constructs.toml`` names, per IGVM construct a vendor
file can use, the case that describes it (for the certification profile's
directive check).  This module only loads and checks the data; the
judgement of an observed run -- or the prediction for a file that is not
run -- lives in :mod:`harness.expect.verdict`.

Every expectation names its ``source``: a QEMU source path with the function
(``"backends/igvm.c: qigvm_directive_vp_context"``) or a section of QEMU's
documentation (``"docs/system/igvm.rst#Initial CPU state with VMSA"``).
A *deviation* records where QEMU's code contradicts its documentation: the
expectation stays the documented one, the deviation says what the code does
and why, and a matching observation is reported as xfail.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.expect.versions import check_range, in_range

PLATFORMS = ("native", "sev", "sev-es", "sev-snp")
#: boots: the guest runs and reports success; aborts: QEMU exits 1 with an
#: error; loads: QEMU accepts the file and runs the guest, whatever the guest
#: then does (for files whose content leaves the guest nothing sensible to run).
OUTCOMES = ("boots", "aborts", "loads")
#: Where in QEMU's start-up a decision is taken, in order.  ``cmdline``:
#: option and object parsing, memory backends; ``board``: machine init up to
#: firmware set-up (pflash, -bios); ``igvm``: loading and processing the IGVM
#: file in backends/igvm.c (including the SEV pre-checks that run while the
#: SEV state is still ``uninit``); ``launch``: checks that need a running SEV
#: launch (KVM with SEV); ``guest``: the guest runs.
STAGES = ("cmdline", "board", "igvm", "launch", "guest")
FORMS = ("reset-vector", "vp-context")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class ExpectDataError(HarnessError):
    """The expectation data is malformed (a bug in the data, exit status 2)."""

    exit_code = 2


@dataclass(frozen=True)
class Deviation:
    """QEMU's code differs from its documentation: what the code does."""

    outcome: str
    stage: str
    reason: str
    reference: tuple[str, ...]
    error: str | None = None
    qemu: str | None = None


@dataclass(frozen=True)
class Expectation:
    """What one platform is expected to do with one case."""

    outcome: str
    stage: str
    source: tuple[str, ...]
    error: str | None = None
    qemu: str | None = None
    note: str = ""
    deviation: Deviation | None = None
    #: what the igvm library QEMU links does here, cited in each library's
    #: code ("libigvm: path: symbol" for the harness's own C library,
    #: "igvm 0.5.0: path: symbol" for the igvm crate's igvm_c): QEMU's
    #: verdict on a file is often the library's (backends/igvm.c has no
    #: format checks of its own)
    library: tuple[str, ...] = ()


@dataclass(frozen=True)
class Case:
    """One IGVM construct under test and its expectations per platform."""

    id: str
    title: str
    header: tuple[str, ...]
    form: str
    recipe: str
    params: dict[str, Any]
    expect: dict[str, tuple[Expectation, ...]]
    smp: int = 1

    def expectation(self, platform: str, qemu_version: str | None) -> Expectation | None:
        """The expectation for ``platform`` valid for ``qemu_version``
        (None: not applicable or no expectation recorded for that version)."""
        for exp in self.expect.get(platform, ()):
            if qemu_version is None or in_range(qemu_version, exp.qemu):
                return exp
        return None


@dataclass(frozen=True)
class Boundary:
    """How far QEMU gets for a platform under TCG (no SEV hardware)."""

    observable: tuple[str, ...]
    error: str
    source: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class Platform:
    name: str
    object_type: str | None
    properties: dict[str, str]
    source: tuple[str, ...]
    boundary: Boundary | None


@dataclass
class Table:
    cases: list[Case] = field(default_factory=list)
    platforms: dict[str, Platform] = field(default_factory=dict)
    #: construct name (harness.expect.constructs) -> ids of the cases that
    #: describe its plain use, first match wins
    constructs: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def case(self, case_id: str) -> Case:
        for c in self.cases:
            if c.id == case_id:
                return c
        raise ExpectDataError(f"no expectation case {case_id!r}")

    def construct_expectation(self, construct: str, platform: str,
                              qemu_version: str | None) -> tuple[Case | None,
                                                                  Expectation | None]:
        """The first case recorded for ``construct`` (constructs.toml) with an
        expectation for ``platform`` at ``qemu_version``; (None, None) if none."""
        for case_id in self.constructs.get(construct, ()):
            case = self.case(case_id)
            exp = case.expectation(platform, qemu_version)
            if exp is not None:
                return case, exp
        return None, None


# ---------------------------------------------------------------- parsing
def _sources(value: Any, where: str, key: str = "source") -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip()
                                                           for v in value):
        raise ExpectDataError(f"{where}: '{key}' must name at least one source")
    return tuple(v.strip() for v in value)


def _line(text: Any) -> str:
    """Multi-line TOML text as one line (reports show it on one line)."""
    return " ".join(str(text).split())


def _choice(value: Any, allowed: tuple[str, ...], where: str, key: str) -> str:
    if value not in allowed:
        raise ExpectDataError(f"{where}: '{key}' is {value!r}, not one of {', '.join(allowed)}")
    return value


def _regex(value: Any, where: str) -> str | None:
    if value is None:
        return None
    try:
        re.compile(value)
    except (re.error, TypeError) as exc:
        raise ExpectDataError(f"{where}: bad error regex {value!r}: {exc}") from None
    return value


def _range(value: Any, where: str) -> str | None:
    if value is None:
        return None
    try:
        check_range(value)
    except HarnessError as exc:
        raise ExpectDataError(f"{where}: {exc}") from None
    return value


_EXP_KEYS = {"outcome", "stage", "source", "error", "qemu", "note", "deviation", "library"}
_DEV_KEYS = {"outcome", "stage", "reason", "reference", "error", "qemu"}


def _deviation(raw: dict, where: str) -> Deviation:
    unknown = set(raw) - _DEV_KEYS
    if unknown:
        raise ExpectDataError(f"{where}: unknown deviation keys {sorted(unknown)}")
    outcome = _choice(raw.get("outcome"), OUTCOMES, where, "outcome")
    error = _regex(raw.get("error"), where)
    if outcome == "aborts" and not error:
        raise ExpectDataError(f"{where}: an 'aborts' deviation needs an 'error' regex")
    reason = raw.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ExpectDataError(f"{where}: a deviation needs a 'reason'")
    return Deviation(outcome=outcome, stage=_choice(raw.get("stage"), STAGES, where, "stage"),
                     reason=_line(reason), reference=_sources(raw.get("reference"), where,
                                                                "reference"),
                     error=error, qemu=_range(raw.get("qemu"), where))


def _expectation(raw: dict, where: str) -> Expectation:
    unknown = set(raw) - _EXP_KEYS
    if unknown:
        raise ExpectDataError(f"{where}: unknown keys {sorted(unknown)}")
    outcome = _choice(raw.get("outcome"), OUTCOMES, where, "outcome")
    error = _regex(raw.get("error"), where)
    if outcome == "aborts" and not error:
        raise ExpectDataError(f"{where}: an 'aborts' expectation needs an 'error' regex")
    if outcome != "aborts" and error:
        raise ExpectDataError(f"{where}: a '{outcome}' expectation takes no 'error'")
    stage = _choice(raw.get("stage", "guest" if outcome != "aborts" else None), STAGES,
                    where, "stage")
    if outcome != "aborts" and stage != "guest":
        raise ExpectDataError(f"{where}: '{outcome}' is decided at stage 'guest'")
    dev = raw.get("deviation")
    return Expectation(outcome=outcome, stage=stage, source=_sources(raw.get("source"), where),
                       error=error, qemu=_range(raw.get("qemu"), where),
                       note=_line(raw.get("note", "")),
                       deviation=_deviation(dev, f"{where}.deviation") if dev else None,
                       library=_sources(raw["library"], where, "library")
                       if "library" in raw else ())


def _case(raw: dict, index: int) -> Case:
    cid = raw.get("id")
    where = f"case #{index} ({cid!r})"
    if not isinstance(cid, str) or not _ID.match(cid):
        raise ExpectDataError(f"{where}: 'id' must be a lower-case slug")
    header = raw.get("header")
    header = (header,) if isinstance(header, str) else tuple(header or ())
    if not header:
        raise ExpectDataError(f"{where}: 'header' names the IGVM header type(s) under test")
    expect_raw = raw.get("expect")
    if not isinstance(expect_raw, dict) or not expect_raw:
        raise ExpectDataError(f"{where}: no 'expect' table")
    unknown = set(expect_raw) - set(PLATFORMS) - {"all"}
    if unknown:
        raise ExpectDataError(f"{where}: unknown platforms {sorted(unknown)}")
    default = expect_raw.get("all")
    expect: dict[str, tuple[Expectation, ...]] = {}
    for platform in PLATFORMS:
        entry = expect_raw.get(platform, default)
        if entry is None or entry == "n/a":
            continue
        entries = entry if isinstance(entry, list) else [entry]
        expect[platform] = tuple(_expectation(e, f"{where} {platform}") for e in entries)
    smp = raw.get("smp", 1)
    if not isinstance(smp, int) or smp < 1:
        raise ExpectDataError(f"{where}: 'smp' must be a positive integer")
    params = raw.get("params", {})
    if not isinstance(params, dict):
        raise ExpectDataError(f"{where}: 'params' must be a table")
    recipe = raw.get("recipe")
    if not isinstance(recipe, str) or not recipe:
        raise ExpectDataError(f"{where}: 'recipe' names the fixture recipe")
    return Case(id=cid, title=str(raw.get("title", cid)), header=header,
                form=_choice(raw.get("form"), FORMS, where, "form"), recipe=recipe,
                params=params, expect=expect, smp=smp)


def _platform(name: str, raw: dict) -> Platform:
    where = f"platform {name!r}"
    b = raw.get("boundary")
    boundary = None
    if b is not None:
        observable = tuple(b.get("observable", ()))
        for s in observable:
            _choice(s, STAGES, f"{where}.boundary", "observable")
        error = _regex(b.get("error"), f"{where}.boundary")
        if not error:
            raise ExpectDataError(f"{where}.boundary: needs an 'error' regex")
        boundary = Boundary(observable=observable, error=error,
                            source=_sources(b.get("source"), f"{where}.boundary"),
                            description=_line(b.get("description", "")))
    return Platform(name=name, object_type=raw.get("object") or None,
                    properties={str(k): str(v) for k, v in raw.get("properties", {}).items()},
                    source=_sources(raw.get("source"), where), boundary=boundary)


def _constructs(raw: dict, ids: set[str]) -> dict[str, tuple[str, ...]]:
    table = raw.get("constructs", {})
    if not isinstance(table, dict):
        raise ExpectDataError("constructs data: [constructs] must be a table")
    out: dict[str, tuple[str, ...]] = {}
    for name, cases in table.items():
        if (not isinstance(cases, list) or not cases
                or not all(isinstance(c, str) for c in cases)):
            raise ExpectDataError(f"constructs data: {name!r} must list case ids")
        missing = [c for c in cases if c not in ids]
        if missing:
            raise ExpectDataError(f"constructs data: {name!r} names unknown case(s) "
                                  f"{', '.join(missing)}")
        out[name] = tuple(cases)
    return out


def parse_tables(cases_toml: str, platforms_toml: str,
                 constructs_toml: str | None = None) -> Table:
    """Build a :class:`Table` from the text of the data files."""
    try:
        cases_raw = tomllib.loads(cases_toml)
        plat_raw = tomllib.loads(platforms_toml)
        cons_raw = tomllib.loads(constructs_toml) if constructs_toml is not None else {}
    except tomllib.TOMLDecodeError as exc:
        raise ExpectDataError(f"expectation data is not valid TOML: {exc}") from None
    table = Table()
    for name in PLATFORMS:
        raw = plat_raw.get("platform", {}).get(name)
        if raw is None:
            raise ExpectDataError(f"platforms data lacks platform {name!r}")
        table.platforms[name] = _platform(name, raw)
    seen: set[str] = set()
    for i, raw in enumerate(cases_raw.get("case", [])):
        case = _case(raw, i)
        if case.id in seen:
            raise ExpectDataError(f"duplicate case id {case.id!r}")
        seen.add(case.id)
        table.cases.append(case)
    if not table.cases:
        raise ExpectDataError("expectation data holds no cases")
    table.constructs = _constructs(cons_raw, seen)
    return table


def data_dir() -> Path:
    return Path(str(resources.files("harness.expect") / "data"))


@lru_cache(maxsize=1)
def load() -> Table:
    """The harness's expectation tables (parsed once per process)."""
    d = data_dir()
    try:
        return parse_tables((d / "cases.toml").read_text(), (d / "platforms.toml").read_text(),
                            (d / "constructs.toml").read_text())
    except OSError as exc:
        raise ExpectDataError(f"cannot read expectation data in {d}: {exc.strerror}") from None


def all_sources(table: Table) -> list[tuple[str, str]]:
    """Every (where, citation) pair in the table, for integrity checks."""
    out: list[tuple[str, str]] = []
    for name, p in table.platforms.items():
        out += [(f"platform {name}", s) for s in p.source]
        if p.boundary:
            out += [(f"platform {name} boundary", s) for s in p.boundary.source]
    for c in table.cases:
        for platform, exps in c.expect.items():
            for e in exps:
                out += [(f"{c.id}/{platform}", s) for s in e.source]
                if e.deviation:
                    out += [(f"{c.id}/{platform} deviation", s) for s in e.deviation.reference]
    return out
