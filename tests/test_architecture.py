"""The layout ARCHITECTURE.md describes: parts in layers, imports only downward, no import circle,
Splink's internals behind one adapter."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tre_link"
# Lower layers first; a module may import its own layer and the layers below it.
LAYERS = {"platform": 0, "ingest": 1, "synth": 1, "link": 2, "publish": 3, "record": 4}
TOP = 5  # tre_link/api.py, cli.py, demo.py
SPLINK_ADAPTER = "tre_link.platform.splink_internals"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], TOP) if len(parts) > 1 else TOP


def _imports() -> dict[str, set[str]]:
    """Every tre_link module and the modules it imports, at any depth of the file."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[_module_name(path)] = names
    return graph


def _internal(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {n for n in names if n in graph and n != m} for m, names in graph.items()}


def test_every_import_points_down_the_layers():
    upward = [
        f"{module} imports {target}"
        for module, targets in _internal(_imports()).items()
        for target in targets
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def test_no_import_circle():
    graph = _internal(_imports())
    state: dict[str, str] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_splink_internals_are_imported_only_by_the_adapter():
    reaching = sorted(
        module for module, names in _imports().items()
        if module != SPLINK_ADAPTER and any(n.startswith("splink.internals") for n in names)
    )
    assert reaching == []


def test_the_layer_check_sees_an_upward_import():
    """The checks above would pass on an empty graph: this one shows they read real imports."""
    graph = _internal(_imports())
    assert "tre_link.platform.config" in graph["tre_link.link.stage"]
    assert _layer("tre_link.record.tracking") > _layer("tre_link.link.stage")
