"""The plugin in real TensorRT registries, on a machine without a GPU.

TensorRT for RTX 1.7 (`tensorrt_rtx_bindings`) and the TensorRT 11.4 lean runtime (`tensorrt_lean_bindings`)
are the real libraries; the plugin is built from engines/plugin with TensorRT 11.x headers (and 10.x headers
for the wrong-major cases). Every documented way of loading it is tried in a fresh process. The C++
contract test (engines/plugin/tests/pluginContractTest.cpp) drives the plugin through each registry, also
under AddressSanitizer and UndefinedBehaviorSanitizer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, build_plugin

pytestmark = [pytest.mark.tensorrt_rtx, pytest.mark.tensorrt_lean, pytest.mark.trt_headers, pytest.mark.nvcc]

PROBE = Path(__file__).with_name("plugin_loader_probe.py")
RTX, LEAN = "tensorrt_rtx_bindings", "tensorrt_lean_bindings"
REFUSAL = "this plugin library was built with TensorRT 10 headers and refuses to register into"


def runtime_libraries() -> tuple[Path, Path]:
    """The real runtime libraries inside the pip wheels: libtensorrt_rtx.so.1 and libnvinfer_lean.so.11."""
    import tensorrt_lean_libs
    import tensorrt_rtx_libs

    rtx = next(Path(tensorrt_rtx_libs.__path__[0]).glob("libtensorrt_rtx.so.*"))
    lean = next(Path(tensorrt_lean_libs.__path__[0]).glob("libnvinfer_lean.so.*"))
    return rtx, lean


def probe(module: str, mode: str, plugin: Path, **env: str) -> tuple[dict, list[str], int]:
    result = subprocess.run(
        [sys.executable, str(PROBE), module, mode, str(plugin)],
        capture_output=True, text=True, timeout=300, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )  # fmt: skip
    lines = result.stdout.strip().splitlines()
    data = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    return data, result.stderr.strip().splitlines(), result.returncode


def run_contract(build: Path) -> str:
    result = subprocess.run(
        ["ctest", "--output-on-failure", "-V"], cwd=build, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    return result.stdout


def test_contract_through_both_registries() -> None:
    out = run_contract(build_plugin(11, runtimes=runtime_libraries()))
    assert "100% tests passed, 0 tests failed out of 2" in out
    assert out.count("bad attribute sets refused with one message: 20 of 20") == 2
    assert "version 10701" in out and "version 110400" in out  # RTX 1.7.1 and TensorRT 11.4.0 really ran


def test_contract_under_sanitizers() -> None:
    out = run_contract(build_plugin(11, sanitize=True, runtimes=runtime_libraries()))
    assert "100% tests passed, 0 tests failed out of 2" in out


@pytest.mark.parametrize(
    ("module", "mode"),
    # "project" is esc_deploy.export.trt.plugin.load_plugin_library, which serves the build flavours (not lean).
    [(m, mode) for m in (RTX, LEAN) for mode in ("ctypes", "registry", "both")] + [(RTX, "project")],
)
def test_every_loader_registers_the_creator_once(trt11_plugin: Path, module: str, mode: str) -> None:
    data, stderr, code = probe(module, mode, trt11_plugin)
    assert code == 0, stderr
    assert data["creators"] == 1, (data, stderr)
    if mode in ("registry", "both"):
        assert data["handle"], "IPluginRegistry.load_library refused the library"


def test_ld_preload_before_tensorrt_then_project_loader(trt11_plugin: Path) -> None:
    """Preloaded before any TensorRT exists, the library registers nothing on its own; the loader then uses
    the registry's load_library (getCreators), and the creator is there once."""
    data, stderr, code = probe(RTX, "project", trt11_plugin, LD_PRELOAD=str(trt11_plugin))
    assert code == 0 and data["creators"] == 1, (data, stderr)


@pytest.mark.parametrize("module", [RTX, LEAN])
@pytest.mark.parametrize("mode", ["ctypes", "registry"])
def test_library_of_another_major_refuses_with_one_line(trt10_plugin: Path, module: str, mode: str) -> None:
    data, stderr, code = probe(module, mode, trt10_plugin)
    assert code == 0, stderr  # no crash
    assert data == {"creators": 0, "handle": False}
    refusals = [line for line in stderr if REFUSAL in line]
    assert len(refusals) == 1, stderr


def test_project_loader_checks_the_major_before_loading(trt10_plugin: Path) -> None:
    data, stderr, code = probe(RTX, "project", trt10_plugin)
    assert code == 1 and not data
    assert not any(REFUSAL in line for line in stderr), "the library was loaded before its major was checked"
    assert (
        "was built with TensorRT 10.x headers; TensorRT for RTX 1.7.1.116 needs one built with TensorRT 11.x"
        in stderr[-1]
    )
