"""One engine build from an in-memory ONNX graph: what parity and the benchmark both need.

The graph is written beside the engine (TensorRT parses files; the fp16 conversion and its reuse check
key on the file), then built like ``python export/build_engine.py`` would.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

    from esc_deploy.export.shape_profile import ShapeProfile
    from esc_deploy.export.trt.build import BuildResult


def build_engine_from_graph(
    graph: onnx.ModelProto,
    *,
    onnx_path: Path,
    engine: Path,
    profile: ShapeProfile,
    precision: str,
    plugin: Path | None,
    calibration: str = "auto",
    attention: str = "auto",
) -> BuildResult:
    """``attention``: as build_engine.py's --attention ('tensorrt': no plugin, TensorRT's fused kernel)."""
    from esc_deploy.common.files import atomic_write_bytes
    from esc_deploy.export.trt.build import build_engine
    from esc_deploy.export.trt.options import EngineOptions, Precision

    atomic_write_bytes(onnx_path, graph.SerializeToString())
    options = EngineOptions(
        onnx=onnx_path,
        plugin=plugin,
        attention=attention,  # type: ignore[arg-type]  # EngineOptions checks it
        precision=Precision(precision),
        calibration=calibration,
        profile=profile,
        output=engine,
    )
    return build_engine(options, progress=False)
