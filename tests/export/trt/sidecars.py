"""Real engines and sidecars for the Triton repository tests, from the engine build itself.

TensorRT for RTX builds ahead of time without a GPU (here for compute capability 8.9), so every machine
with the dev extra builds a real engine of a small stand-in network in well under a second, and the
sidecar is the one the build writes (`EngineSidecar`), never a hand-made dict. Where TensorRT for RTX is
missing the test skips (fails under CI, which installs it: tests/conftest.py's `skip_or_fail`).
"""

from __future__ import annotations

from pathlib import Path

RTX_TARGET = "8.9"


def build_engine_for(
    onnx: Path,
    folder: Path,
    *,
    profile: str = "1x3x32x32 2x3x64x64 4x3x96x96",
    name: str = "esc-light_x4.plan",
    compute_capabilities: tuple[str, ...] = (RTX_TARGET,),
) -> Path:
    """`python export/build_engine.py --runtime tensorrt-rtx` of `onnx` into `folder/name` (+ sidecar)."""
    from esc_deploy.export.shape_profile import ShapeProfile
    from esc_deploy.export.trt.build import build_engine
    from esc_deploy.export.trt.env import installed_runtime
    from esc_deploy.export.trt.options import EngineOptions
    from tests.conftest import skip_or_fail

    if not installed_runtime("tensorrt-rtx"):
        skip_or_fail("needs TensorRT for RTX to build a real engine: pip install -e .[tensorrt-rtx]", "tensorrt_rtx")
    options = EngineOptions(
        onnx=onnx,
        plugin=None,
        runtime="tensorrt-rtx",
        compute_capabilities=compute_capabilities,
        profile=ShapeProfile.parse(*profile.split()),  # "min opt max"
        output=folder / name,
    )
    return build_engine(options, progress=False).engine


def write_stand_in_onnx(path: Path, *, metadata: bool = True, scale: int = 4) -> Path:
    """The exporter's interface (input [B, 3, H, W] -> output, esc.config metadata), nearest-neighbour inside."""
    import onnx
    from onnx import TensorProto, helper

    dims: list[str | int] = ["batch", 3, "height", "width"]
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, scale, scale])
    node = helper.make_node("Resize", ["input", "", "scales"], ["output"], mode="nearest")
    graph = helper.make_graph(
        [node],
        "nearest",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        initializer=[scales],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if metadata:
        from esc.config import preset_config
        from esc_deploy.export.onnx_graph.metadata import model_props

        helper.set_model_props(model, model_props(preset_config("esc-light", scale=scale), "plugin"))
    onnx.save(model, str(path))
    return path
