"""The wheel: two import names (esc, esc_deploy), the stage folders mapped (not linked) into esc_deploy, the kernel
sources (and not the TensorRT wrapper) as esc's package data, and default outputs under the working directory rather
than inside site-packages.

Built from a copy of the checkout with the project's own setuptools backend and installed with pip into a
folder that a fresh interpreter imports from, outside any checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

from esc.kernel_files import KERNEL_SOURCES

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "esc", "esc_deploy", "export", "runtime", "serving", "validation", "engines")
FOLDERS = ("export", "runtime", "serving", "validation")

PROBE = r"""
import importlib, json, pkgutil, sys
from pathlib import Path
import esc, esc_deploy
from esc.kernel_files import kernel_source_dir
from esc_deploy.common.defaults import DOCS_DIR, OUTPUT_DIR
failed = {}
for module in pkgutil.walk_packages(esc_deploy.__path__, "esc_deploy."):
    if module.name.endswith(("__main__", "python_model", "image_model")):  # the last two run inside Triton
        continue
    try:
        importlib.import_module(module.name)
    except Exception as exc:
        failed[module.name] = repr(exc)
print(json.dumps({"esc": esc.__file__, "esc_deploy": esc_deploy.__file__, "kernel": str(kernel_source_dir()),
                  "output_dir": str(OUTPUT_DIR), "docs_dir": str(DOCS_DIR), "failed": failed,
                  "imported": sorted(m for m in sys.modules if m.startswith("esc_deploy."))}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the folder it was installed into)."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(source)],
                   check=True, capture_output=True, text=True)  # fmt: skip
    (wheel,) = (root / "dist").glob("esc_deploy-*.whl")
    target = root / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, capture_output=True)
    return wheel, target


def test_wheel_installs_two_import_names_and_no_generic_ones(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    with zipfile.ZipFile(wheel) as archive:
        top = {name.split("/")[0] for name in archive.namelist() if not name.split("/")[0].endswith(".dist-info")}
        names = set(archive.namelist())
    assert top == {"esc", "esc_deploy"}
    for folder in ("export/trt", "export/onnx_graph", "serving/model_repository", "validation/accuracy"):
        assert f"esc_deploy/{folder}/__init__.py" in names


def test_the_tree_holds_no_symbolic_link() -> None:
    listed = subprocess.run(["git", "ls-files", "-s"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert [line for line in listed.splitlines() if line.startswith("120000")] == []


def test_pyproject_maps_every_package_folder_of_the_checkout() -> None:
    settings = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {"esc": "esc", "esc_deploy": "esc_deploy"} | settings["package-dir"]
    found = {"esc.kernel_sources"}
    for package, folder in folders.items():
        for init in (REPO / folder).rglob("__init__.py"):
            found.add(".".join((package, *init.parent.relative_to(REPO / folder).parts)))
    assert sorted(settings["packages"]) == sorted(found)
    assert sorted(settings["package-data"]["esc.kernel_sources"]) == sorted(KERNEL_SOURCES)


def test_every_package_of_the_checkout_is_in_the_wheel(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    with zipfile.ZipFile(wheel) as archive:
        packed = {name for name in archive.namelist() if name.endswith(".py")}
    expected = {f"esc/{p.relative_to(REPO / 'esc').as_posix()}" for p in (REPO / "esc").glob("*.py")}
    for folder in ("esc_deploy", *FOLDERS):
        prefix = "esc_deploy" if folder == "esc_deploy" else f"esc_deploy/{folder}"
        expected |= {f"{prefix}/{p.relative_to(REPO / folder).as_posix()}" for p in (REPO / folder).rglob("*.py")}
    assert {name for name in expected if "__pycache__" not in name} - packed == set()


def test_installed_package_imports_and_finds_its_kernel_sources(installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, target = installed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ESC_KERNEL_LIBRARY")}
    env["PYTHONPATH"] = str(target)
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    facts = json.loads(result.stdout.splitlines()[-1])
    assert Path(facts["esc"]).is_relative_to(target) and Path(facts["esc_deploy"]).is_relative_to(target)
    assert facts["failed"] == {}
    assert "esc_deploy.export.trt.build" in facts["imported"] and "esc_deploy.serving.client.cli" in facts["imported"]
    kernel = Path(facts["kernel"])
    assert kernel == target / "esc" / "kernel_sources" and not kernel.is_symlink()
    shipped = sorted(p.name for p in kernel.iterdir() if p.is_file() and p.name != "__init__.py")
    assert shipped == sorted(KERNEL_SOURCES)  # the kernel, not the plugin wrapper
    for name in KERNEL_SOURCES:
        assert (kernel / name).read_bytes() == (REPO / "engines" / "plugin" / name).read_bytes()
    assert Path(facts["output_dir"]) == tmp_path / "build"  # not inside site-packages
    assert Path(facts["docs_dir"]) == tmp_path / "docs"


def test_installed_command_line_runs(installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, target = installed
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run(
        [sys.executable, "-m", "esc_deploy", "build", "--onnx", str(tmp_path / "missing.onnx"), "--fp16"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "missing.onnx" in result.stderr
