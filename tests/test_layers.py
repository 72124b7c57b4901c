"""The import graph of src/xmodal follows xmodal.layers: no upward import, no cycle of packages or modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from xmodal.layers import LAYERS, layer_of

SRC = Path(__file__).resolve().parents[1] / "src" / "xmodal"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(target: str) -> str:
    """The module a dotted name refers to: itself if it is a module or package, else its parent."""
    path = SRC.parent / Path(*target.split("."))
    if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
        return target
    return target.rsplit(".", 1)[0]


def imports(path: Path) -> set[str]:
    """Every xmodal module ``path`` imports, function-level imports included."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(resolve(a.name) for a in node.names if a.name.startswith("xmodal"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("xmodal"):
            out.update(resolve(f"{node.module}.{a.name}") for a in node.names)
    return out


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) - {module_name(p)} for p in SRC.rglob("*.py")}


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "xmodal"


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph, as a list of nodes, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_package_has_a_layer():
    packages = {package(m) for m in graph()} - {"xmodal", "__main__"}
    for name in packages:
        layer_of(name)
    listed = {n for layer in LAYERS for n in layer}
    assert listed <= packages, f"layers list packages that do not exist: {sorted(listed - packages)}"


def test_no_import_from_a_lower_layer_to_a_higher_one():
    bad = []
    for module, targets in graph().items():
        if package(module) in ("xmodal", "__main__"):
            continue  # the facade (lazy exports) and `python -m xmodal` sit above every layer
        for target in targets:
            if target == "xmodal":
                bad.append(f"{module} imports the facade `xmodal` (import from the defining module)")
            elif layer_of(package(target)) > layer_of(package(module)):
                bad.append(f"{module} (layer {layer_of(package(module))}) imports {target} (layer {layer_of(package(target))})")
    assert not bad, "\n".join(sorted(bad))


def test_no_cycle_between_packages():
    edges: dict[str, set[str]] = {}
    for module, targets in graph().items():
        edges.setdefault(package(module), set()).update(package(t) for t in targets if package(t) != package(module))
    assert find_cycle(edges) is None, f"package cycle: {' -> '.join(find_cycle(edges))}"


def test_no_cycle_between_modules():
    cycle = find_cycle(graph())
    assert cycle is None, f"module cycle: {' -> '.join(cycle)}"


@pytest.mark.parametrize("edges,expected", [({"a": {"b"}, "b": {"a"}}, True), ({"a": {"b"}, "b": set()}, False)])
def test_cycle_finder_finds_cycles(edges, expected):
    assert (find_cycle(edges) is not None) == expected
