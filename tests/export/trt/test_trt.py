"""The default model as a TensorRT fp16 engine: builds, uses the plugin, matches ONNX Runtime.

Needs TensorRT and a CUDA GPU (marker `tensorrt`, skipped with the reason otherwise), the exported
default ONNX (`python export/to_onnx.py`) and the plugin library (cmake build of engines/plugin).
Threshold: max |TensorRT fp16 - ONNX Runtime fp32| <= 2e-2 on outputs in [0, 1] (fp16 has 11
significant bits; about 50 layers of accumulated rounding stay well below 1/50 of the range).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from esc_deploy.common.defaults import DEFAULT_ONNX, DEFAULT_PLUGIN
from esc_deploy.export.shape_profile import ShapeOutsideProfileError, ShapeProfile
from esc_deploy.export.trt.options import EngineOptions, Precision

pytestmark = pytest.mark.tensorrt

REPO = Path(__file__).resolve().parents[3]
MAX_ABS_FP16 = 2e-2
PROFILE = ShapeProfile((1, 3, 64, 64), (1, 3, 128, 128), (2, 3, 256, 256))  # small: a quick build


def _default_files() -> tuple[Path, Path]:
    if not DEFAULT_ONNX.is_file():
        script = REPO / "export" / "to_onnx.py"
        if not script.is_file():
            pytest.skip(f"{DEFAULT_ONNX} missing and export/to_onnx.py not there to write it")
        subprocess.run([sys.executable, str(script)], cwd=REPO, check=True, timeout=600)
    if not DEFAULT_PLUGIN.is_file():
        from esc_deploy.export.trt.plugin import BUILD_PLUGIN_HINT

        pytest.skip(f"plugin library {DEFAULT_PLUGIN} missing: {BUILD_PLUGIN_HINT}")
    return DEFAULT_ONNX, DEFAULT_PLUGIN


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from esc_deploy.export.trt.build import build_engine

    onnx_path, plugin = _default_files()
    out = tmp_path_factory.mktemp("engine")
    options = EngineOptions(
        onnx=onnx_path,
        plugin=plugin,
        precision=Precision.FP16,
        profile=PROFILE,
        timing_cache=out / "timing.cache",
        output=out / "default_fp16.engine",
    )
    return options, build_engine(options, progress=False)


@pytest.fixture(scope="module")
def runner(built: Any) -> Any:
    from esc_deploy.runtime.engine import EngineRunner

    _, result = built
    return EngineRunner(result.engine)


def test_default_model_builds_in_fp16(built: Any) -> None:
    import tensorrt as trt

    options, result = built
    assert result.engine.stat().st_size > 0
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["precision"] == "fp16"
    assert sidecar["tensorrt_version"] == trt.__version__
    assert sidecar["profile"] == PROFILE.as_dict()
    assert options.timing_cache is not None and options.timing_cache.stat().st_size > 0


def test_engine_contains_the_plugin_layers(built: Any, runner: Any) -> None:
    import tensorrt as trt

    from esc_deploy.export.trt.plugin import esc_node_names

    _, result = built
    nodes = esc_node_names(result.onnx)
    assert nodes and len(result.plugin_layers) == len(nodes)
    info = runner.engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    assert all(name in info for name in result.plugin_layers)


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (2, 3, 96, 160)])
def test_output_matches_onnxruntime(built: Any, runner: Any, shape: tuple[int, int, int, int]) -> None:
    import onnxruntime as ort
    import torch

    options, _ = built
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    session = ort.InferenceSession(str(options.onnx), providers=["CPUExecutionProvider"])
    [expected] = session.run(None, {options.input_name: x.numpy()})
    got = runner(x.cuda()).float().cpu().numpy()
    assert got.shape == expected.shape
    err = np.abs(got - expected)
    print(f"{shape}: max abs {err.max():.2e}, mean abs {err.mean():.2e}, device memory {runner.device_memory_bytes}")
    assert err.max() <= MAX_ABS_FP16


def test_runner_rejects_shapes_outside_the_profile(runner: Any) -> None:
    import torch

    assert runner.device_memory_bytes > 0
    with pytest.raises(ShapeOutsideProfileError, match="height 32 not in"):
        runner(torch.rand(1, 3, 32, 64, device="cuda"))


def test_build_without_plugin_fails_on_the_function_body(tmp_path: Path) -> None:
    """A fresh process, so that no plugin is registered: the parser would import the function body."""
    onnx_path, _ = _default_files()
    result = subprocess.run(
        [sys.executable, str(REPO / "export" / "build_engine.py"), "--onnx", str(onnx_path), "--no-plugin",
         "--fp16", "--no-progress", "--output", str(tmp_path / "e.engine")],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )  # fmt: skip
    assert result.returncode == 2
    assert "built from their ONNX function body instead of the plugin" in result.stderr
    assert not (tmp_path / "e.engine").exists()
