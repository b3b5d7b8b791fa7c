"""The certify package imports the layers it uses directly, without an
import circle among its own modules, and no lower layer imports it
(CONTRIBUTING.md: lower layers never import higher ones): the report layer,
its CLI module included, since the certify command lives in
harness/certify/commands.py; and the bottom floor (harness/options.py and
the other base modules) imports no layer at all."""

from __future__ import annotations

import ast
from pathlib import Path

import harness

ROOT = Path(harness.__file__).parent


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_certify_modules_form_no_import_circle():
    modules = {p.stem: _imports(p) for p in (ROOT / "certify").glob("*.py")}
    edges = {name: {m.rsplit(".", 1)[-1] for m in imps
                    if m.startswith("harness.certify.") and m.rsplit(".", 1)[-1] in modules}
             for name, imps in modules.items()}
    seen: dict[str, str] = {}

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"import circle: {' -> '.join(path + (node,))}"
        if seen.get(node) == "done":
            return
        for nxt in sorted(edges[node]):
            visit(nxt, path + (node,))
        seen[node] = "done"

    for name in modules:
        visit(name, ())
    assert "adapters" not in modules
    # the profile plans and runs the checks; only the command (the layer's CLI face) runs it
    assert "profile" not in set().union(*(edges[n] for n in modules
                                          if n not in ("profile", "commands")))


def test_certify_looks_nothing_up_by_name():
    for path in (ROOT / "certify").glob("*.py"):
        assert "importlib" not in _imports(path), path.name


def test_the_report_layer_does_not_import_certify():
    for path in sorted((ROOT / "report").glob("*.py")):
        bad = {m for m in _imports(path) if m.startswith("harness.certify")}
        assert not bad, f"{path.name} imports {bad}"


#: The bottom floor (CONTRIBUTING.md "Layout": base modules below every layer).
BASE = ("errors", "inputs", "outputs", "locks", "terminal", "record", "options")
#: What a base module may import of the harness: other base modules only.
BASE_MODULES = {f"harness.{name}" for name in BASE} | {"harness"}


def test_the_bottom_floor_imports_no_layer():
    for name in BASE:
        path = ROOT / f"{name}.py"
        if not path.exists():
            continue
        bad = {m for m in _imports(path) if m.startswith("harness")
               and m not in BASE_MODULES and m.rsplit(".", 1)[0] not in BASE_MODULES}
        assert not bad, f"harness/{name}.py imports {sorted(bad)}"
