"""Command line of `python export/build_engine.py`: flags -> `EngineOptions` -> `build_engine`.

Defaults come from `EngineOptions()` itself, so each one is written once. Every user error is one
line on stderr and exit status 2, with no traceback and no file written.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from esc_deploy.common.command import ArgumentParser
from esc_deploy.export.shape_profile import ShapeProfile, format_shape
from esc_deploy.export.trt.env import (
    RTX_COMPUTE_CAPABILITIES,
    RTX_DEFAULT_TARGETS,
    RUNTIME_CHOICES,
    Flavour,
    MissingDependencyError,
    TrtRuntime,
    TrtVersion,
    installed_runtime,
)
from esc_deploy.export.trt.options import ATTENTION_CHOICES, EngineOptions, Precision

PROG = "build_engine.py"
EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    d = EngineOptions()
    p = ArgumentParser(
        prog=PROG,
        description="Build a TensorRT (10.8+, 11.x) or TensorRT for RTX (1.7+) engine from the exported ESC ONNX.",
    )
    p.add_argument("--onnx", type=Path, default=d.onnx, help="ONNX from export/to_onnx.py (default: %(default)s)")
    p.add_argument(
        "--fp16",
        action="store_true",
        help="fp16 engine (TensorRT 10.x: FP16 flag, LayerNorm/softmax in fp32; 11.x and TensorRT for RTX: "
        "builds the fp16 mixed-precision ONNX, converting an fp32 one first)",
    )
    p.add_argument(
        "--runtime",
        choices=RUNTIME_CHOICES,
        default=d.runtime,
        help="which TensorRT builds the engine (auto: TensorRT if installed, else TensorRT for RTX; "
        "default: %(default)s)",
    )
    p.add_argument(
        "--compute-capability",
        default=None,
        help="TensorRT for RTX only: comma-separated targets, some of "
        f"{','.join(RTX_COMPUTE_CAPABILITIES)} (default: the local GPU's, else {','.join(RTX_DEFAULT_TARGETS)}); "
        "no GPU is needed to build",
    )
    p.add_argument(
        "--attention",
        choices=ATTENTION_CHOICES,
        default=d.attention,
        help="who computes the window attention: plugin (needs --plugin's library), tensorrt (TensorRT's own "
        "fused kernel, no plugin needed; with --fp16), auto: the plugin where its library is found, else "
        "tensorrt (default: %(default)s)",
    )
    plugin = p.add_mutually_exclusive_group()
    plugin.add_argument(
        "--plugin",
        type=Path,
        default=d.plugin,
        help="ESCWindowAttention plugin library (default: %(default)s)",
    )
    plugin.add_argument(
        "--no-plugin",
        action="store_true",
        help="build without a plugin library (the TensorRT attention path)",
    )
    p.add_argument(
        "--calibration",
        default=d.calibration,
        metavar="DIR|auto|off",
        help="with --fp16: photographs measuring which nodes must stay fp32 (export/onnx_graph/calibration_set.py); "
        "auto: scikit-image's, off: by op type only (default: %(default)s)",
    )
    p.add_argument("--min-shape", default=format_shape(d.profile.min), help="NCHW (default: %(default)s)")
    p.add_argument("--opt-shape", default=format_shape(d.profile.opt), help="NCHW (default: %(default)s)")
    p.add_argument("--max-shape", default=format_shape(d.profile.max), help="NCHW (default: %(default)s)")
    p.add_argument(
        "--workspace-gb",
        type=float,
        default=d.workspace_gb,
        help="workspace memory pool limit, GiB (default: TensorRT's, the whole device)",
    )
    p.add_argument(
        "--timing-cache",
        type=Path,
        default=d.timing_cache,
        help="timing cache file, loaded if present and saved after the build",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=d.output,
        help="engine path (default: build/<name with ONNX hash, TensorRT version, GPU>.engine; sidecar JSON beside it)",
    )
    p.add_argument(
        "--print-trtexec",
        action="store_true",
        help="print the equivalent trtexec (TensorRT) or tensorrt_rtx (TensorRT for RTX) command and exit",
    )
    p.add_argument(
        "--trt-major",
        type=int,
        choices=(10, 11),
        default=None,
        help="with --print-trtexec and --runtime tensorrt: the TensorRT major the line is for "
        "(default: the installed one, else 10)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def options_from_args(args: argparse.Namespace) -> EngineOptions:
    """ValueError (one line) for a bad shape, profile or number."""
    capabilities = None
    if args.compute_capability is not None:
        capabilities = tuple(cc.strip() for cc in args.compute_capability.split(",") if cc.strip())
    return EngineOptions(
        onnx=args.onnx,
        runtime=args.runtime,
        compute_capabilities=capabilities,
        plugin=None if args.no_plugin else args.plugin,
        attention=args.attention,
        precision=Precision.FP16 if args.fp16 else Precision.FP32,
        calibration=args.calibration,
        profile=ShapeProfile.parse(args.min_shape, args.opt_shape, args.max_shape),
        workspace_gb=args.workspace_gb,
        timing_cache=args.timing_cache,
        output=args.output,
    )


def planned_engine_path(options: EngineOptions, runtime: TrtRuntime, installed: bool) -> Path:
    """--output, or the path the build itself would write (its name holds hashes, the runtime version and the
    target, so it needs the installed runtime and, for TensorRT, the GPU); ValueError where it cannot be known."""
    if options.output is not None:
        return options.output
    if not installed:
        raise ValueError(
            f"the engine's default name holds the version of the runtime that builds it, and {runtime.label} is "
            "not installed here; pass --output PATH"
        )
    from esc_deploy.export.trt.attention_path import choose_attention
    from esc_deploy.export.trt.build import check_inputs, plan_engine, resolve_target

    check_inputs(options)
    options = choose_attention(options).effective(options)
    try:
        target = resolve_target(runtime, options.compute_capabilities)
    except MissingDependencyError as exc:
        raise ValueError(f"{exc}; or pass --output PATH to name the engine") from None
    return plan_engine(options, runtime, target).path


def planned_runtime(options: EngineOptions, trt_major: int | None) -> tuple[TrtRuntime, bool]:
    """The installed runtime the line is for, or (nothing installed) the flavour named, TensorRT 10 by default;
    and whether it is the installed one."""
    installed = installed_runtime(options.runtime)
    if installed is not None and (trt_major is None or installed.version.major == trt_major):
        return installed, True
    if options.runtime == "tensorrt-rtx":
        return TrtRuntime(Flavour.TENSORRT_RTX, TrtVersion(1, 7, 0), "1.x"), False
    major = trt_major or 10
    return TrtRuntime(Flavour.TENSORRT, TrtVersion(major, 0, 0), f"{major}.x"), False


def print_trtexec(options: EngineOptions, trt_major: int | None) -> None:
    from esc_deploy.export.trt.fp16 import network_typing, planned_onnx
    from esc_deploy.export.trt.trtexec import trtexec_command, trtexec_notes

    if trt_major is not None and options.runtime == "tensorrt-rtx":
        raise ValueError("--trt-major is for --runtime tensorrt; TensorRT for RTX has its own versions")
    runtime, installed = planned_runtime(options, trt_major)
    engine = planned_engine_path(options, runtime, installed)
    source = options.onnx
    if options.onnx.is_file():  # the TensorRT attention path builds from the plugin export's standard-op copy
        from esc_deploy.export.onnx_graph.standard_attention import standard_attention_path
        from esc_deploy.export.trt.attention_path import choose_attention

        choice = choose_attention(options)
        options = choice.effective(options)
        if choice.path == "tensorrt" and choice.plugin_nodes:
            source = standard_attention_path(options.onnx)
            print(f"note: {choice.line()}; build_engine.py writes {source} first", file=sys.stderr)
    onnx = planned_onnx(dataclasses.replace(options, onnx=source), network_typing(runtime))
    print(trtexec_command(options, runtime=runtime, engine=engine, onnx_for_build=onnx))
    targets = options.compute_capabilities or ()
    for note in trtexec_notes(options, runtime=runtime, onnx_for_build=onnx, targets=targets):
        print(f"note: {note}", file=sys.stderr)
    if options.output is None:
        print(f"note: {engine} is the path {PROG} writes (named after the ONNX, runtime and target)", file=sys.stderr)


def _fail(message: str) -> int:
    from esc_deploy.common.command import error

    return error(message)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = options_from_args(args)
    except ValueError as exc:
        return _fail(str(exc))
    if args.print_trtexec:
        try:
            print_trtexec(options, args.trt_major)
        except (MissingDependencyError, ValueError) as exc:
            return _fail(str(exc))
        return 0

    from esc_deploy.export.trt.build import BuildError, build_engine, describe

    try:
        result = build_engine(options, progress=not args.no_progress, say=lambda line: print(line, file=sys.stderr))
    except (MissingDependencyError, BuildError, ValueError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; no engine written", file=sys.stderr)
        return 130
    print(describe(result))
    if result.unfused_warning is not None:
        print(result.unfused_warning, file=sys.stderr)
    return 0
