"""Command line of `python export/build_engine.py`: flags -> `EngineOptions` -> `build_engine`.

Defaults come from `EngineOptions()` itself, so each one is written once. Every user error is one
line on stderr and exit status 2, with no traceback and no file written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from export.cli import ArgumentParser
from export.defaults import ENGINES_DIR
from export.engine_env import MissingDependencyError, installed_tensorrt
from export.engine_options import ENGINE_SUFFIX, EngineOptions, Precision
from export.shape_profile import ShapeProfile, format_shape

PROG = "build_engine.py"
EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    d = EngineOptions()
    p = ArgumentParser(prog=PROG, description="Build a TensorRT engine (10.x or 11.x) from the exported ESC ONNX.")
    p.add_argument("--onnx", type=Path, default=d.onnx, help="ONNX from export/to_onnx.py (default: %(default)s)")
    p.add_argument(
        "--fp16",
        action="store_true",
        help="fp16 engine (10.x: FP16 flag, LayerNorm/softmax in fp32; "
        "11.x: builds the fp16 mixed-precision ONNX, converting an fp32 one first)",
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
        help="build without a plugin library (only for an ONNX without ESCWindowAttention nodes)",
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
        help="engine path (default: engines/<name with ONNX "
        "hash, TensorRT version, GPU>.engine; sidecar JSON beside it)",
    )
    p.add_argument("--print-trtexec", action="store_true", help="print the equivalent trtexec command and exit")
    p.add_argument(
        "--trt-major",
        type=int,
        choices=(10, 11),
        default=None,
        help="with --print-trtexec: the TensorRT major version the line is for (default: the installed one, else 10)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def options_from_args(args: argparse.Namespace) -> EngineOptions:
    """ValueError (one line) for a bad shape, profile or number."""
    return EngineOptions(
        onnx=args.onnx,
        plugin=None if args.no_plugin else args.plugin,
        precision=Precision.FP16 if args.fp16 else Precision.FP32,
        profile=ShapeProfile.parse(args.min_shape, args.opt_shape, args.max_shape),
        workspace_gb=args.workspace_gb,
        timing_cache=args.timing_cache,
        output=args.output,
    )


def planned_engine_path(options: EngineOptions) -> Path:
    """--output, or a name without the parts only a build knows (hashes, TensorRT version, GPU)."""
    if options.output is not None:
        return options.output
    return ENGINES_DIR / f"{options.onnx.stem}_{options.precision.value}{ENGINE_SUFFIX}"


def print_trtexec(options: EngineOptions, trt_major: int | None) -> None:
    from export.engine_precision import planned_onnx
    from export.engine_trtexec import trtexec_command, trtexec_notes

    if trt_major is None:
        installed = installed_tensorrt()
        trt_major = installed[0].major if installed is not None else 10
    onnx = planned_onnx(options, trt_major)
    print(trtexec_command(options, trt_major=trt_major, engine=planned_engine_path(options), onnx_for_build=onnx))
    for note in trtexec_notes(options, trt_major=trt_major, onnx_for_build=onnx):
        print(f"note: {note}", file=sys.stderr)


def _fail(message: str) -> int:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USER_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = options_from_args(args)
    except ValueError as exc:
        return _fail(str(exc))
    if args.print_trtexec:
        print_trtexec(options, args.trt_major)
        return 0

    from export.engine_build import BuildError, build_engine, describe

    try:
        result = build_engine(options, progress=not args.no_progress)
    except (MissingDependencyError, BuildError, ValueError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; no engine written", file=sys.stderr)
        return 130
    print(describe(result))
    return 0
