"""Data flows one way: model (esc) -> shared command-line pieces (esc_deploy.common) -> export (ONNX,
engines) -> runtime (model facts, runners, tiles, image files) -> serving (upscale, Triton) -> validation beside
them, and the esc-deploy command line (esc_deploy) over all of them.

A module of a lower stage that imports a higher one fails here, wherever the import sits (top level,
inside a function, or under TYPE_CHECKING), so a stage can be installed and used without the ones after it.
Every import names the installed package (`esc_deploy.export`, never the folder `export`), so that no
module is loaded twice under two names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# (stage, import prefix, folder); each stage may import only the stages before it
STAGES = (
    ("model", "esc", "esc"),
    ("common", "esc_deploy.common", "esc_deploy/common"),
    ("export", "esc_deploy.export", "export"),
    ("runtime", "esc_deploy.runtime", "runtime"),
    ("serving", "esc_deploy.serving", "serving"),
    ("validation", "esc_deploy.validation", "validation"),
    ("command line", "esc_deploy", "esc_deploy"),
)
FOLDER_NAMES = ("export", "runtime", "serving", "validation", "engines")  # folders, importable only through esc_deploy


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def stage_of(module: str) -> int | None:
    """Index in STAGES of the stage a module name belongs to (the longest matching prefix)."""
    matches = [i for i, (_, prefix, _) in enumerate(STAGES) if module == prefix or module.startswith(prefix + ".")]
    return max(matches, key=lambda i: len(STAGES[i][1])) if matches else None


def stage_files(index: int) -> list[Path]:
    folder = REPO / STAGES[index][2]
    inner = [REPO / s[2] for s in STAGES if s[2] != STAGES[index][2] and s[2].startswith(STAGES[index][2] + "/")]
    files = []
    for path in sorted(folder.rglob("*.py")):
        if any(path.is_relative_to(sub) for sub in inner):
            continue
        files.append(path)
    return files


def violations(index: int) -> list[str]:
    found = []
    for path in stage_files(index):
        for module in sorted(imported_modules(path)):
            target = stage_of(module)
            if target is not None and target > index:
                found.append(f"{path.relative_to(REPO)} imports {module} ({STAGES[target][0]})")
            if module.split(".")[0] in FOLDER_NAMES or module.startswith(("esc_deploy.engines", "esc_deploy.esc")):
                found.append(f"{path.relative_to(REPO)} imports {module} by its folder name")
    return found


@pytest.mark.parametrize("index", range(len(STAGES)), ids=[s[0] for s in STAGES])
def test_no_stage_imports_a_later_one(index: int) -> None:
    assert stage_files(index), f"no files found for {STAGES[index][0]}"
    assert violations(index) == []


def test_tests_import_installed_names_only() -> None:
    found = [
        f"{path.relative_to(REPO)} imports {module}"
        for path in sorted((REPO / "tests").rglob("*.py"))
        for module in imported_modules(path)
        if module.split(".")[0] in FOLDER_NAMES
    ]
    assert found == []


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from esc_deploy.validation.images import load_inputs\n    import esc_deploy.common.command\n"
    )
    assert imported_modules(module) == {"esc_deploy.validation.images.load_inputs", "esc_deploy.common.command"}
    assert [stage_of(m) for m in sorted(imported_modules(module))] == [1, 5]


def test_a_lower_stage_importing_a_higher_one_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "bad.py").write_text("from esc_deploy.validation.images import load_inputs\nimport export\n")
    monkeypatch.setitem(globals(), "REPO", tmp_path)
    assert violations(2) == [
        "export/bad.py imports esc_deploy.validation.images.load_inputs (validation)",
        "export/bad.py imports export by its folder name",
    ]
