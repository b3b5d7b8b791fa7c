"""Cells of the matrix: case x platform x IGVM command-line syntax (x
mutator rule for the malformed-file case), generated from the expectation
data -- never listed by hand."""

from __future__ import annotations

from dataclasses import dataclass

from harness.expect.table import PLATFORMS, Case, Table

#: IGVM syntaxes (harness.qemu.cmdline): the igvm-cfg object, and the early
#: igvm-file property of sev-guest (needs a confidential-guest object).
SYNTAXES = ("cfg", "sev-guest")
#: The probe capability (harness.qemu.probe.Capabilities.missing) each syntax needs.
SYNTAX_CAPABILITY = {"cfg": "igvm-cfg", "sev-guest": "igvm-file"}


@dataclass(frozen=True)
class Cell:
    case: Case
    platform: str
    syntax: str
    rule: str | None = None

    @property
    def id(self) -> str:
        rule = f"[{self.rule}]" if self.rule else ""
        return f"{self.case.id}{rule}/{self.platform}/{self.syntax}"


def mutator_rules(which: str = "*") -> list[str]:
    """Rule ids of the format library's mutators (one malformed file each):
    ``*`` all, ``reference`` the rules the reference igvm parser enforces,
    ``strict`` the specification rules it does not (harness.igvm.rules)."""
    try:
        from harness.igvm.mutate import MUTATORS
        from harness.igvm.rules import RULES
    except ImportError:  # the format layer has no mutators yet
        return []
    if which == "*":
        return sorted(MUTATORS)
    strict = which == "strict"
    return sorted(r for r in MUTATORS if r in RULES and bool(RULES[r].strict) == strict)


def generate(table: Table, platforms=PLATFORMS, syntaxes=SYNTAXES,
             rules: list[str] | None = None) -> list[Cell]:
    """Every cell of ``table`` for the given platforms and syntaxes.  The
    early syntax exists only with a confidential-guest object, so native
    cells use igvm-cfg alone."""
    cells = []
    for case in table.cases:
        expand = [None]
        if case.recipe == "mutator":
            which = case.params.get("rule", "*")
            expand = mutator_rules(which) if rules is None else rules
        for platform in platforms:
            if platform not in case.expect:
                continue
            for syntax in syntaxes:
                if syntax == "sev-guest" and platform == "native":
                    continue
                for rule in expand:
                    cells.append(Cell(case, platform, syntax, rule))
    return cells


@dataclass(frozen=True)
class AbsentSyntax:
    """Stands for every cell of an IGVM syntax the QEMU under test lacks: one
    skip naming the capability instead of one skip per cell."""
    syntax: str
    reason: str                 # the probe's sentence
    cells: int
    platforms: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"syntax-{self.syntax}-absent"

    @property
    def message(self) -> str:
        return f"{self.reason}: the {self.cells} cells of IGVM syntax {self.syntax} not run"


def collapse_absent(cells: list[Cell], missing,
                    selected=lambda c: True) -> tuple[list[Cell], list[AbsentSyntax]]:
    """Split *cells* into those whose syntax the QEMU has and one AbsentSyntax
    per syntax it lacks; ``missing(syntax)`` gives the probe's reason or None.
    An AbsentSyntax counts the cells ``selected`` keeps (the --platform choice)
    and names the platforms of all of them (for deselection)."""
    keep: list[Cell] = []
    absent: dict[str, list[Cell]] = {}
    reasons: dict[str, str | None] = {}
    for c in cells:
        if c.syntax not in reasons:
            reasons[c.syntax] = missing(c.syntax)
        (absent.setdefault(c.syntax, []) if reasons[c.syntax] else keep).append(c)
    return keep, [AbsentSyntax(s, reasons[s] or "", sum(1 for c in cs if selected(c)),
                               tuple(dict.fromkeys(c.platform for c in cs)))
                  for s, cs in absent.items()]
