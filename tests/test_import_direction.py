"""Data flows one way: model (esc) -> export (ONNX, engines, serving) -> validation beside them, and the
esc-deploy command line (esc_deploy) over all of them.

A module of a lower stage that imports a higher one fails here, wherever the import sits (top level,
inside a function, or under TYPE_CHECKING), so a stage can be installed and used without the ones after it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STAGES = ("esc", "export", "validation", "esc_deploy")  # each may import only the stages before it


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def violations(stage: str) -> list[str]:
    later = set(STAGES[STAGES.index(stage) + 1 :])
    found = []
    for path in sorted((REPO / stage).rglob("*.py")):
        bad = imported_packages(path) & later
        found += [f"{path.relative_to(REPO)} imports {name}" for name in sorted(bad)]
    return found


@pytest.mark.parametrize("stage", STAGES)
def test_no_stage_imports_a_later_one(stage: str) -> None:
    assert violations(stage) == []


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from validation.images import load_inputs\n    import export.cli\n")
    assert imported_packages(module) == {"validation", "export"}
