"""The layout is the architecture: packages import only the layers below them, and no module imports itself
back through others. Lazy (function-level) imports count too: they hide a cycle, they do not remove it."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"core": "core", "models": "models", "edge": "edge", "calibration": "calibration", "controller": "controller", "demo": "demo", "deploy": "deploy", "fleet": "fleet"}
#: what each package may import (besides itself)
ALLOWED = {
    "core": set(),
    "models": {"core"},
    "edge": {"core", "models"},
    "calibration": {"core", "models", "edge"},
    "controller": {"core"},
    # `roadside demo` runs everything: it sits above all the others
    "demo": {"core", "models", "edge", "calibration", "controller"},
    # `roadside bundle`: models, the edge's and the controller's configurations
    "deploy": {"core", "models", "edge", "controller"},
    # the fleet's load test drives simulated devices through the edge's own outbox and MQTT link
    "fleet": {"core", "models", "edge"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in PACKAGES.items():
        for f in (ROOT / folder).rglob("*.py"):
            rel = f.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join(["roadside", pkg, *parts])] = f
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """roadside modules imported anywhere in the file (top level or inside functions), except under
    ``if TYPE_CHECKING:`` (annotations only)."""
    found = set()
    tree = ast.parse(path.read_text(), str(path))
    type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
                 for stmt in node.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in type_only:  # annotations only: never imported at run time
            continue
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for n in names:
            while n and n not in modules:
                n = n.rpartition(".")[0]
            if n.startswith("roadside."):
                found.add(n)
    return found


def test_packages_import_only_the_layers_below_them():
    modules = _modules()
    bad = []
    for mod, path in modules.items():
        pkg = mod.split(".")[1]
        for dep in _imports(path, modules):
            other = dep.split(".")[1]
            if other != pkg and other not in ALLOWED[pkg]:
                bad.append(f"{mod} imports {dep} ({pkg} may import {sorted(ALLOWED[pkg]) or 'nothing'})")
    assert not bad, "\n".join(bad)


def test_no_import_cycles_between_modules():
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(cycles)


def test_the_architecture_test_sees_lazy_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from roadside.edge.detector import Detector\n")
    assert "roadside.edge.detector" in _imports(f, _modules())


def test_the_health_api_sees_the_service_only_through_its_view():
    """edge/health_api.py depends on the status records and its own view protocol, not on the service (not even
    for type annotations), so the service's parts can change without the API knowing."""
    tree = ast.parse((ROOT / "edge" / "health_api.py").read_text())
    used = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    used |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert {m for m in used if m.startswith("roadside.")} == {"roadside.edge.status", "roadside.edge.api_common"}
