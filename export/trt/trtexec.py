"""The trtexec (or tensorrt_rtx) command line equivalent to an `EngineOptions` build: pure string work.

Differences that the tool cannot express are said by `trtexec_notes`, not hidden.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from esc_deploy.export.shape_profile import format_shape
from esc_deploy.export.trt.env import TrtRuntime
from esc_deploy.export.trt.options import EngineOptions, Precision


def trtexec_args(options: EngineOptions, *, runtime: TrtRuntime, engine: Path, onnx_for_build: Path) -> list[str]:
    """argv for the flavour's tool. `onnx_for_build` is the fp16 mixed ONNX where the network is strongly typed."""
    name = options.input_name
    profile = options.profile
    args = [runtime.trtexec, f"--onnx={onnx_for_build}", f"--saveEngine={engine}"]
    if runtime.strongly_typed_only and not runtime.builds_ahead_of_time:
        args.append("--stronglyTyped")  # TensorRT 11; tensorrt_rtx has no other typing and no such flag
    elif not runtime.strongly_typed_only and options.precision is Precision.FP16:
        args += ["--fp16", "--precisionConstraints=obey"]
    args += [
        f"--minShapes={name}:{format_shape(profile.min)}",
        f"--optShapes={name}:{format_shape(profile.opt)}",
        f"--maxShapes={name}:{format_shape(profile.max)}",
    ]
    if options.workspace_gb is not None:
        args.append(f"--memPoolSize=workspace:{round(options.workspace_gb * 1024)}M")
    if options.timing_cache is not None:
        args.append(f"--timingCacheFile={options.timing_cache}")
    if options.plugin is not None:
        # Loaded at build and at run time, not serialized into the engine: what EngineRunner does too.
        args.append(f"--staticPlugins={options.plugin}")
    args.append("--profilingVerbosity=detailed")
    return args


def trtexec_command(options: EngineOptions, *, runtime: TrtRuntime, engine: Path, onnx_for_build: Path) -> str:
    return shlex.join(trtexec_args(options, runtime=runtime, engine=engine, onnx_for_build=onnx_for_build))


def trtexec_notes(
    options: EngineOptions, *, runtime: TrtRuntime, onnx_for_build: Path, targets: tuple[str, ...] = ()
) -> list[str]:
    notes: list[str] = []
    if not runtime.strongly_typed_only and options.precision is Precision.FP16:
        notes.append(
            "trtexec cannot select layers by type: build_engine.py also pins normalization and softmax "
            "layers to fp32 (trtexec would need --layerPrecisions=<name>:fp32 for each)"
        )
    if onnx_for_build != options.onnx:
        notes.append(
            f"{runtime.label} is strongly typed and builds the fp16 mixed ONNX {onnx_for_build}: "
            "build_engine.py writes it from the fp32 file first (onnx_graph.fp16.convert_to_mixed_fp16)"
        )
    if runtime.builds_ahead_of_time and targets:
        notes.append(
            f"build_engine.py builds for compute capabilities {', '.join(targets)} "
            "(IBuilderConfig.set_compute_capability); tensorrt_rtx builds for its default set"
        )
    return notes
