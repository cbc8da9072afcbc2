"""The package's layering: every module is in `rag_helpers.LAYERS`, imports only from its own layer
or below (imports inside functions included), and no imports go round in a loop."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import rag_helpers
from rag_helpers import LAYERS

PACKAGE = Path(rag_helpers.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def imported_modules(module: str, source: str | None = None) -> dict[str, int]:
    """The package modules `module` imports (anywhere in the file), each with the line of its first import."""
    if source is None:
        source = (PACKAGE / f"{module}.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    found: dict[str, int] = {}

    def add(name: str, line: int) -> None:
        if name in MODULES and name != module:
            found.setdefault(name, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "rag_helpers" and len(parts) > 1:
                    add(parts[1], node.lineno)
        elif isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".") if node.module else []
            if node.level == 0 and parts[:1] != ["rag_helpers"]:
                continue
            inside = parts[1:] if node.level == 0 else parts
            if inside:
                add(inside[0], node.lineno)
            else:  # `from . import store` / `from rag_helpers import store`
                for alias in node.names:
                    add(alias.name, node.lineno)
    return found


GRAPH = {module: imported_modules(module) for module in MODULES}


def test_every_module_has_a_layer_and_every_layer_entry_a_module():
    assert sorted(set(MODULES) - set(LAYERS)) == [], "add these modules to rag_helpers.LAYERS"
    assert sorted(set(LAYERS) - set(MODULES)) == [], "LAYERS names modules that do not exist"


@pytest.mark.parametrize("module", MODULES)
def test_a_module_imports_nothing_from_a_higher_layer(module):
    upward = [
        f"{module} (L{LAYERS[module]}) line {line} imports {name} (L{LAYERS[name]})"
        for name, line in sorted(GRAPH[module].items())
        if LAYERS.get(name, 99) > LAYERS.get(module, -1)
    ]
    assert upward == []


def test_no_imports_go_round_in_a_loop():
    state: dict[str, str] = {}
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for name in sorted(GRAPH[module]):
            if state.get(name) == "open":
                cycles.append(path[path.index(name) :] + [name])
            elif name not in state:
                visit(name)
        path.pop()
        state[module] = "done"

    for module in MODULES:
        if module not in state:
            visit(module)
    assert cycles == []


def test_the_checker_sees_lazy_and_package_level_imports():
    """Imports inside functions, `from . import x`, absolute and dotted forms all count; others do not."""
    source = (
        "import numpy\nfrom .store import ingest\nfrom typing import Any\n\n"
        "def f():\n    from . import registry\n    import rag_helpers.cli\n"
        "    from rag_helpers import widget\n    from rag_helpers.fusion import fuse_hits\n"
    )
    assert imported_modules("base", source) == {"store": 2, "registry": 6, "cli": 7, "widget": 8, "fusion": 9}
