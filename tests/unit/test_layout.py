"""The package's layout rules, read from the source with ``ast``: imports run one way (no import circle at run
time; imports under ``TYPE_CHECKING`` aside), and the ``Server`` facade is imported by nothing inside the
package but ``pyswoole/__init__.py``."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "src" / "pyswoole"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in PACKAGE_DIR.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (
        isinstance(test, ast.Name)
        and test.id == "TYPE_CHECKING"
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _runtime_imports(node: ast.AST):
    """Import statements reachable at run time: everything but the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for orelse in child.orelse:
                yield from _runtime_imports(orelse)
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        yield from _runtime_imports(child)


def _imported_modules(name: str, path: Path) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _runtime_imports(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("pyswoole"))
            continue
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if not target.startswith("pyswoole"):
            continue
        for alias in node.names:  # ``from package import module`` imports the module
            candidate = f"{target}.{alias.name}"
            found.add(candidate if candidate in MODULES else target)
    # A module's own packages are imported before it, whatever it imports from them (``from . import _ext``).
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return {module for module in found if module in MODULES and module != name and module not in ancestors}


GRAPH = {name: _imported_modules(name, path) for name, path in MODULES.items()}


def test_the_module_graph_is_read_from_the_source() -> None:
    assert "pyswoole.server" in GRAPH["pyswoole"]
    assert "pyswoole.runtime.context" in GRAPH["pyswoole.runtime.boot"]
    assert "pyswoole.ipc.codec" in GRAPH["pyswoole.runtime.worker"]


def test_no_import_circle_at_run_time() -> None:
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            raise AssertionError("import circle: " + " -> ".join(trail[trail.index(name) :] + [name]))
        if name in done:
            return
        for imported in sorted(GRAPH[name]):
            visit(imported, trail + [name])
        done.add(name)

    for name in sorted(GRAPH):
        visit(name, [])


def test_only_the_package_imports_the_server_facade() -> None:
    importers = sorted(
        name for name, imported in GRAPH.items() if any(module == "pyswoole.server" for module in imported)
    )
    assert importers == ["pyswoole"]


def test_every_room_says_what_it_is_for() -> None:
    for name, path in MODULES.items():
        assert ast.get_docstring(ast.parse(path.read_text())), f"{name} has no module docstring"
