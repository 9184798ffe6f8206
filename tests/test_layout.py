"""The package's layering (docs/architecture.md): imports run downward only, no cycles,
no module over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "damond"

LAYERS = {
    "damond": 0,  # the package's face: only __version__
    "damond.model": 0,
    "damond.config": 1,
    "damond.control": 2,
    "damond.backend": 3,
    "damond.metrics": 4,
    "damond.policy": 4,
    "damond.runtime": 5,
    "damond.simulation": 6,
    "damond.cli": 7,
    "damond.__main__": 8,
}
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    """The folder (or top-level module) that ``module`` belongs to."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def imports(path: Path) -> set[str]:
    """Every damond module ``path`` imports, at any depth (function-level imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("damond"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("damond"))
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_folder_has_a_layer() -> None:
    assert {layer(m) for m in MODULES} <= set(LAYERS)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_downward(module: str) -> None:
    own = layer(module)
    upward = [
        target
        for target in imports(MODULES[module])
        if target in MODULES
        and layer(target) != own
        and (LAYERS[layer(target)] >= LAYERS[own] and own != "damond")
    ]
    assert upward == [], f"{module} imports from its own level or above: {upward}"


def test_no_import_cycle_between_modules() -> None:
    graph = {m: {t for t in imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            raise AssertionError("import cycle: " + " -> ".join([*path, node]))
        if node in done:
            return
        for target in graph[node]:
            visit(target, [*path, node])
        done.add(node)

    for module in graph:
        visit(module, [])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines"
