"""Command line of ``python export/to_onnx.py``: any ESC checkpoint (or the default preset) to ONNX."""

from __future__ import annotations

import time
from pathlib import Path

from esc_deploy.common.command import ArgumentParser, fail, quiet_exporter_logs
from esc_deploy.common.defaults import DEFAULT_PRESET, DEFAULT_SCALE, OUTPUT_DIR, default_model
from esc_deploy.export.onnx_graph.calibration_set import DEFAULT_LARGE_SHAPE
from esc_deploy.export.onnx_graph.exporter import DEFAULT_OPSET, OnnxExportOptions, export_onnx
from esc_deploy.export.precision import Precision
from esc_deploy.export.shape_profile import parse_shape, parse_side_pair


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python export/to_onnx.py",
        description="Export an ESC model to ONNX with a TensorRT plugin node (or standard ops) for attention.",
    )
    parser.add_argument("--checkpoint", type=Path, help="official .pth/.pt/.safetensors; default: seeded "
                        f"random {DEFAULT_PRESET} x{DEFAULT_SCALE}")  # fmt: skip
    parser.add_argument("--output", type=Path, help="ONNX file to write; default: under build/")
    parser.add_argument("--attention", choices=["plugin", "native"], default="plugin")
    parser.add_argument("--precision", choices=[p.value for p in Precision], default=Precision.FP32.value)
    parser.add_argument(
        "--calibration",
        default="auto",
        metavar="DIR|auto|off",
        help="with --precision fp16: photographs measuring which nodes must stay fp32; auto: scikit-image's "
        "at the model's input scale and one at --calibration-shape; off: by op type only (default: auto)",
    )
    parser.add_argument(
        "--calibration-shape",
        default="x".join(map(str, DEFAULT_LARGE_SHAPE)),
        metavar="HxW",
        help="the largest input the engines will run, calibrated too (shrunk to a fixed 512 MiB of ONNX Runtime "
        "memory, whatever the machine; default: %(default)s)",
    )
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="23+: native attention as one Attention node")
    parser.add_argument("--static-shape", metavar="BxCxHxW", help="fix the input shape")
    return parser


def default_output(checkpoint: Path | None, options: OnnxExportOptions) -> Path:
    stem = checkpoint.stem if checkpoint else f"{DEFAULT_PRESET}_x{DEFAULT_SCALE}"
    return OUTPUT_DIR / f"{stem}{options.file_suffix()}.onnx"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_exporter_logs()
    try:
        import esc

        options = OnnxExportOptions(
            attention=args.attention,
            precision=args.precision,
            opset=args.opset,
            static_shape=parse_shape(args.static_shape) if args.static_shape else None,
            calibration=args.calibration,
            calibration_shape=parse_side_pair(args.calibration_shape),
        )
        model = esc.load_model(args.checkpoint) if args.checkpoint else default_model()
        output = args.output or default_output(args.checkpoint, options)
        start = time.perf_counter()
        summary = export_onnx(model, output, options)
    except (ValueError, OSError) as exc:  # CheckpointError is a ValueError
        fail(str(exc))
    print(f"wrote {summary.path} in {time.perf_counter() - start:.1f} s")
    print(summary.line())
    if summary.fp16_line:
        print(summary.fp16_line)
    return 0
