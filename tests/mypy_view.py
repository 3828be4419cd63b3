"""Lay out the packages as installed for mypy: `python tests/mypy_view.py [build/mypy]`.

pyproject maps the folders export/, serving/ and validation/ to esc_deploy.export and the rest; mypy reads
folders, not setuptools' mapping, so this writes a tree of file links under build/ (ignored by git) that
has the installed shape, from pyproject's own package list and mapping. Errors name the view's paths:
build/mypy/esc_deploy/export/... is export/.... Nothing here is imported at run time.
"""

from __future__ import annotations

import functools
import shutil
import sys
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DEST = REPO / "build" / "mypy"


@functools.cache
def package_folders() -> dict[str, Path]:
    """Every package of the distribution -> its folder in the checkout (the code-only ones); the import scan of
    tests/validation/accuracy/test_extras.py resolves modules with it too."""
    settings = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping: dict[str, str] = settings.get("package-dir", {})
    folders = {}
    for package in settings["packages"]:
        parts = package.split(".")
        for depth in range(len(parts), 0, -1):  # the longest mapped prefix, else the package's own path
            prefix = ".".join(parts[:depth])
            if prefix in mapping:
                folders[package] = REPO / mapping[prefix] / Path(*parts[depth:])
                break
        else:
            folders[package] = REPO / Path(*parts)
    return {package: folder for package, folder in folders.items() if (folder / "__init__.py").is_file()}


def write_view(dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    for package, folder in package_folders().items():
        target = dest / Path(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for source in folder.glob("*.py"):
            (target / source.name).symlink_to(source)


if __name__ == "__main__":
    write_view(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DEST)
