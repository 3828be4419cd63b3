"""python export/pipeline.py: the whole pipeline on the built-in default model, step by step.

1. export ESC-light x4 (seeded random weights) to ONNX with the plugin attention node;
2. check the file against PyTorch with ONNX Runtime on a real photograph;
3. build the TensorRT fp16 engine where TensorRT, a CUDA GPU and the plugin library are present,
   and otherwise say that this step was skipped and why.
Exit code 0 when every step that could run passed, 1 when a check failed, 2 on a usage error.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from esc_deploy.common.command import ArgumentParser, fail, quiet_exporter_logs
from esc_deploy.common.defaults import DEFAULT_ONNX, DEFAULT_PLUGIN

if TYPE_CHECKING:
    from esc.models import ESCBase

ORT_TOLERANCE = 1e-4  # float32 ONNX Runtime vs PyTorch, max abs


def photograph(model: ESCBase) -> np.ndarray:
    """scikit-image's astronaut as the model's low-resolution input (1, 3, h, w) in [0, 1]."""
    from esc_deploy.export.photographs import skimage_photographs, to_low_res

    ((name, rgb),) = skimage_photographs(("astronaut",))
    config = model.config
    return to_low_res(rgb, name, scale=config.scale, max_side=96, min_side=config.min_side).pixels


def check_with_onnxruntime(model: ESCBase, onnx_path: str) -> float:
    import torch

    from esc_deploy.export.onnx_graph.ort_session import ort_session

    x = photograph(model)
    session = ort_session(onnx_path)
    (got,) = session.run(None, {"input": x})
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    return float(np.abs(got - expected).max())


def engine_step() -> str:
    """Build the engine if this machine can; the line to print either way."""
    from esc_deploy.export.trt.env import cannot_run_engines

    reason = cannot_run_engines()
    if reason is not None:
        return f"skipped TensorRT engine build: {reason}"
    if not DEFAULT_PLUGIN.is_file():
        from esc_deploy.export.trt.plugin import BUILD_PLUGIN_HINT

        return f"skipped TensorRT engine build: plugin library {DEFAULT_PLUGIN} not built ({BUILD_PLUGIN_HINT})"
    from esc_deploy.export.trt.build import build_engine, describe
    from esc_deploy.export.trt.options import EngineOptions, Precision

    return describe(build_engine(EngineOptions(precision=Precision.FP16)))


def main(argv: list[str] | None = None) -> int:
    ArgumentParser(prog="python export/pipeline.py", description=__doc__).parse_args(argv)
    quiet_exporter_logs()
    from esc_deploy.common.defaults import default_model
    from esc_deploy.export.onnx_graph.exporter import export_onnx

    model = default_model()
    start = time.perf_counter()
    try:
        summary = export_onnx(model, DEFAULT_ONNX)
    except OSError as exc:
        fail(str(exc))
    print(f"[1/3] exported {summary.path} in {time.perf_counter() - start:.1f} s: {summary.line()}")
    error = check_with_onnxruntime(model, str(summary.path))
    verdict = "PASS" if error <= ORT_TOLERANCE else "FAIL"
    print(f"[2/3] ONNX Runtime vs PyTorch on a photograph: max abs error {error:.2e} (<= {ORT_TOLERANCE:g}): {verdict}")
    try:
        message = engine_step()
    except (RuntimeError, ValueError) as exc:  # BuildError, MissingDependencyError: already one line
        fail(f"TensorRT engine build failed: {exc}")
    print(f"[3/3] {message}")
    return 0 if verdict == "PASS" else 1
