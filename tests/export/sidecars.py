"""Engine sidecars for the Triton repository tests, made by the engine build's own code."""

from __future__ import annotations

from pathlib import Path


def write_engine_with_sidecar(
    onnx: Path, folder: Path, *, profile: str = "1x3x32x32 2x3x64x64 4x3x96x96", name: str = "esc-light_x4.plan"
) -> Path:
    """An engine file with the sidecar an engine build of `onnx` writes: the build's own input check
    (which reads the model's facts from the ONNX metadata), its record type and its writer. The engine's
    bytes are a stand-in: PyTriton's server has no TensorRT backend to deserialize them, and this
    machine has no TensorRT to build them."""
    from export.engine_build import check_inputs
    from export.engine_env import Flavour, GpuInfo
    from export.engine_files import sha256_file
    from export.engine_options import EngineOptions, Precision
    from export.engine_sidecar import BuildTarget, EngineSidecar, FileRecord
    from export.shape_profile import ShapeProfile

    shapes = ShapeProfile.parse(*profile.split())  # "min opt max"
    options = EngineOptions(onnx=onnx, plugin=None, precision=Precision.FP16, profile=shapes)
    engine = folder / name
    sha = sha256_file(onnx)
    sidecar = EngineSidecar(
        engine=engine.name,
        cache_key="0" * 64,
        runtime=Flavour.TENSORRT,
        runtime_version="10.13.3",
        target=BuildTarget(gpu=GpuInfo(name="NVIDIA H100", compute_capability=(9, 0)), compute_capabilities=()),
        network_typing="weak",
        precision=options.precision,
        profile=options.profile,
        input_name=options.input_name,
        output_name=options.output_name,
        workspace_gb=options.workspace_gb,
        model=check_inputs(options),
        onnx=FileRecord(str(onnx.resolve()), sha),
        built_onnx=FileRecord(str(onnx.resolve()), sha),
        plugin=None,
        plugin_layers=(),
        built_at="2026-01-01T00:00:00Z",
    )
    sidecar.write(engine)
    engine.write_bytes(b"serialized engine stand-in")
    return engine
