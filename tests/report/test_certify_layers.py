"""The certify package imports the layers it uses directly, without an
import circle among its own modules, and the report layer never imports it
(CONTRIBUTING.md: lower layers never import higher ones; its CLI module
excepted, which runs the certify command)."""

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
    assert "profile" not in set().union(*(edges[n] for n in modules if n != "profile"))


def test_certify_looks_nothing_up_by_name():
    for path in (ROOT / "certify").glob("*.py"):
        assert "importlib" not in _imports(path), path.name


def test_the_report_layer_does_not_import_certify():
    # commands.py is CLI (the top of every layer): it runs the certify command
    for path in sorted(set((ROOT / "report").glob("*.py")) - {ROOT / "report" / "commands.py"}):
        bad = {m for m in _imports(path) if m.startswith("harness.certify")}
        assert not bad, f"{path.name} imports {bad}"
