"""The shape of the `actors` package, read from its source: its modules import each other
without a cycle, only the Fleet knows the Orchestrator actor, and no module reaches into
another object's private members."""

from __future__ import annotations

import ast
from pathlib import Path

import actors

PACKAGE = Path(actors.__file__).parent


def _modules() -> dict[str, ast.Module]:
    return {
        f"actors.{path.stem}": ast.parse(path.read_text(), str(path))
        for path in sorted(PACKAGE.glob("*.py"))
        if path.stem != "__init__"
    }


def _imports(tree: ast.Module) -> set[str]:
    """The `actors` modules a module imports, at run time or for type checking."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "actors":
                found.update(f"actors.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("actors.")}


def test_actors_modules_import_each_other_without_a_cycle() -> None:
    modules = _modules()
    graph = {name: _imports(tree) & modules.keys() for name, tree in modules.items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = " -> ".join([*path[path.index(name) :], name])
            raise AssertionError(f"import cycle: {cycle}")
        if name in done:
            return
        for dep in sorted(graph[name]):
            visit(dep, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_only_the_fleet_knows_the_orchestrator_actor() -> None:
    importers = {
        name for name, tree in _modules().items() if "actors.orchestrator" in _imports(tree)
    }
    assert importers == {"actors.fleet"}


def test_no_module_reaches_into_another_objects_private_members() -> None:
    reaches = [
        f"{name}:{node.lineno}: {ast.unparse(node)}"
        for name, tree in _modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]
    assert reaches == []
