"""``pip install -e .[onnx]`` installs what validation/parity.py imports.

Every third-party module that validation/parity.py and validation/accuracy/ import, or a project module
they import (followed through esc and esc_deploy), imports must come from the base dependencies or the
onnx extra, directly or as a requirement of one of them. The TensorRT runtimes are the exception: the
engine backends report "skipped: <reason>" where none is installed (esc_deploy.export.trt.env.cannot_run_engines).
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from tests.mypy_view import package_folders

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[3]
PROJECT = "esc-deploy"
FIRST_PARTY = {"esc", "esc_deploy"}
PARITY_EXTRAS = ("onnx",)
# module -> the extra that installs it; only runners that parity does not need without them import these: the
# engine backends (they skip without one) and esc_deploy.runtime's Triton runner (open_runner's "triton").
ENGINE_MODULES = {"tensorrt": "tensorrt", "tritonclient": "serve"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _module_file(module: str) -> Path | None:
    """The checkout's file of a first-party module, through pyproject's package list and folder mapping."""
    parts = module.split(".")
    folders = package_folders()
    for depth in range(len(parts), 0, -1):  # the longest package prefix
        folder = folders.get(".".join(parts[:depth]))
        if folder is None:
            continue
        base = folder.joinpath(*parts[depth:])
        for path in (base.with_suffix(".py"), base / "__init__.py"):
            if path.is_file():
                return path
        return None
    return None


def _imported_names(path: Path) -> Iterator[str]:
    """Every absolute import in the file, at any depth (function-level imports run too)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)  # a submodule, maybe


def third_party_imports(roots: Iterable[Path]) -> dict[str, set[str]]:
    """Top-level third-party module -> the project files that import it, following project imports."""
    found: dict[str, set[str]] = {}
    todo, seen = list(roots), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_names(path):
            top = name.partition(".")[0]
            if top in FIRST_PARTY:
                target = _module_file(name)
                if target is not None:
                    todo.append(target)
            elif top not in sys.stdlib_module_names:
                found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def _declared(pyproject: Mapping[str, Any], extras: Iterable[str]) -> list[Requirement]:
    """The base dependencies and ``extras``, with the project's references to its own extras expanded."""
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})
    requirements, todo, done = [], list(extras), set()
    strings = list(project.get("dependencies", []))
    while todo:
        extra = todo.pop()
        if extra not in done:
            done.add(extra)
            strings += optional[extra]
    for text in strings:
        requirement = Requirement(text)
        if _normalise(requirement.name) == PROJECT:
            requirements += _declared({"project": {"optional-dependencies": optional}}, requirement.extras)
        else:
            requirements.append(requirement)
    return requirements


def installed_closure(requirements: Iterable[Requirement]) -> set[str]:
    """Normalised names of the requirements and, where installed, everything they require in turn."""
    names: set[str] = set()
    todo = list(requirements)
    while todo:
        requirement = todo.pop()
        name = _normalise(requirement.name)
        if name in names:
            continue
        names.add(name)
        try:
            children = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in children:
            child = Requirement(text)
            wanted = requirement.extras or {""}
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in wanted):
                todo.append(child)
    return names


def unprovided(
    modules: Mapping[str, set[str]], provided: set[str], owners: Mapping[str, list[str]]
) -> tuple[list[str], list[str]]:
    """(modules whose distributions the install does not bring, modules not installed here at all)."""
    missing, unknown = [], []
    for module, files in sorted(modules.items()):
        if module in ENGINE_MODULES:
            continue
        dists = owners.get(module)
        if not dists:
            unknown.append(module)
        elif not {_normalise(d) for d in dists} & provided:
            missing.append(f"{module} (from {', '.join(sorted(dists))}; imported by {', '.join(sorted(files))})")
    return missing, unknown


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _parity_roots() -> list[Path]:
    return [REPO / "validation" / "parity.py", *sorted((REPO / "validation" / "accuracy").glob("*.py"))]


def test_the_onnx_extra_installs_what_parity_imports() -> None:
    modules = third_party_imports(_parity_roots())
    provided = installed_closure(_declared(_pyproject(), PARITY_EXTRAS))
    missing, unknown = unprovided(modules, provided, metadata.packages_distributions())
    assert not missing, f"pip install -e .[{','.join(PARITY_EXTRAS)}] lacks: " + "; ".join(missing)
    if unknown:
        pytest.skip(f"not installed here, so their distributions are unknown: {', '.join(unknown)}")


def test_engine_modules_come_from_their_extra() -> None:
    pyproject = _pyproject()
    for module, extra in ENGINE_MODULES.items():
        names = {_normalise(r.name) for r in _declared(pyproject, [extra])}
        assert _normalise(module) in names, f"the {extra} extra does not install {module}"


def test_the_check_reports_a_module_that_no_extra_installs() -> None:
    pyproject = {"project": {"dependencies": ["numpy"], "optional-dependencies": {"onnx": ["onnx"]}}}
    provided = installed_closure(_declared(pyproject, PARITY_EXTRAS))
    modules = {"numpy": {"a.py"}, "polygraphy": {"validation/accuracy/stats.py"}}
    missing, _ = unprovided(modules, provided, {"numpy": ["numpy"], "polygraphy": ["polygraphy"]})
    assert [m.partition(" ")[0] for m in missing] == ["polygraphy"]


def test_the_scan_follows_project_imports() -> None:
    modules = third_party_imports(_parity_roots())
    assert "polygraphy" in modules  # validation/accuracy/stats.py, directly
    assert "onnxscript" in modules  # through export/onnx_graph/exporter.py
    assert "tensorrt" in modules  # through the engine runners
