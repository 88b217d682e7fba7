"""Imports run down the layers: a module never imports one of a higher layer (nor the facade)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "matloop"

#: the architecture, ground first; a package may import its own layer and those below it
LAYERS = [
    {"_version", "errors", "units", "neighbors", "utils", "descriptors"},
    {"compositions", "store", "data", "execution", "design", "surrogate"},
    {"models", "property", "analysis", "evaluation"},
    {"calculators"},
    {"training", "labelling", "md", "eos"},
    {"active", "export", "validation"},
    {"testing", "cli", "__init__", "__main__"},
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def _unit(path: Path) -> str:
    """The top-level package or module of matloop that `path` belongs to."""
    first = path.relative_to(SRC).parts[0]
    return first.removesuffix(".py")


def _imported_units(tree: ast.AST) -> set[str]:
    """matloop units imported anywhere in `tree` (function-level imports included)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "matloop":
                names = [f"matloop.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "matloop":
                unit = parts[1] if len(parts) > 1 else "__init__"
                found.add(unit if unit in LAYER_OF else "__init__")
    return found


def test_every_unit_has_a_layer():
    units = {_unit(p) for p in SRC.rglob("*.py")}
    assert units <= set(LAYER_OF), f"add to LAYERS: {sorted(units - set(LAYER_OF))}"


def test_no_import_runs_back_up():
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        unit = _unit(path)
        for target in _imported_units(ast.parse(path.read_text())):
            if target != unit and LAYER_OF[target] > LAYER_OF[unit]:
                wrong.append(f"{path.relative_to(SRC)} (layer {LAYER_OF[unit]}) imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_check_can_fail():
    tree = ast.parse("def f():\n    from matloop.active.loop import run\n    import matloop\n")
    assert _imported_units(tree) == {"active", "__init__"}
    assert LAYER_OF["active"] > LAYER_OF["md"]
