"""python validation/parity.py [--checkpoint PATH] [--backends LIST] [--images DIR] [--report-dir DIR]

Numerical parity of every ESC backend against eager PyTorch float32 on real photographs: torch-fp16,
ONNX Runtime on the plugin and native graphs in float32 and mixed fp16, and a TensorRT engine. Backends
that cannot run here are listed as "skipped: reason". Writes parity.json, parity.md and parity.png.

Exit code: 0 when every backend that ran passed, 1 when one failed (or none ran), 2 on a usage error.
Thresholds: THRESHOLDS in validation/accuracy/stats.py. Every fp16 backend keeps in float32 what the
calibrated fp16 rule (esc/fp16.py) says, on the same calibration set (--calibration); an fp16 backend
that still fails gets a line naming the first value that overflows fp16 and the command to calibrate.
The library is validation/accuracy/suite.py (runners: validation/backends.py, comparators:
validation/accuracy/stats.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from esc_deploy.common.command import ArgumentParser, fail, quiet_exporter_logs
from esc_deploy.common.defaults import DEFAULT_PRESET, DEFAULT_SCALE
from esc_deploy.export.precision import Precision
from esc_deploy.export.shape_profile import parse_side_pair
from esc_deploy.validation.accuracy.suite import ParityOptions
from esc_deploy.validation.backends import BACKENDS, GROUPS
from esc_deploy.validation.images import DEFAULT_IMAGES, DEFAULT_MAX_SIDE


def build_parser() -> ArgumentParser:
    d = ParityOptions()  # every default is the options dataclass's
    parser = ArgumentParser(
        prog="python validation/parity.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, help="official .pth/.pt/.safetensors; default: seeded "
                        f"random {DEFAULT_PRESET} x{DEFAULT_SCALE}")  # fmt: skip
    parser.add_argument(
        "--backends",
        default="all",
        help=f"comma-separated: {', '.join(BACKENDS)}, or the groups {', '.join(GROUPS)} (default: all that can run)",
    )
    parser.add_argument("--images", type=Path, help=f"folder of PNG/JPEG photographs (default: scikit-image's "
                        f"{', '.join(DEFAULT_IMAGES)})")  # fmt: skip
    parser.add_argument(
        "--max-side",
        type=int,
        default=DEFAULT_MAX_SIDE,
        help=f"cap on the longer input side after dividing by the scale; 0: no cap (default {DEFAULT_MAX_SIDE})",
    )
    parser.add_argument("--report-dir", type=Path, default=d.work_dir, help="default: %(default)s")
    parser.add_argument("--save-outputs", action="store_true", help="also write each backend's outputs as .npz")
    parser.add_argument("--engine", type=Path, help="TensorRT engine to check (default: build one in --report-dir)")
    parser.add_argument("--plugin", type=Path, default=d.plugin, help="TensorRT plugin library")
    parser.add_argument(
        "--trt-precision",
        choices=[p.value for p in Precision],
        default=d.trt_precision.value,
        help="of the engine built",
    )
    parser.add_argument(
        "--calibration",
        default=d.calibration,
        metavar="DIR|auto|off",
        help="the fp16 rule's calibration for every fp16 backend (as export/to_onnx.py --precision fp16): "
        "auto: scikit-image's photographs, off: by op type only (default: %(default)s)",
    )
    parser.add_argument(
        "--calibration-shape",
        default="x".join(map(str, d.calibration_shape)),
        metavar="HxW",
        help="the large calibration input (shrunk to fit memory; default: %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_side < 0:
        fail("--max-side must be >= 0")
    quiet_exporter_logs()
    from esc_deploy.validation.accuracy.report import write_parity_report
    from esc_deploy.validation.accuracy.suite import ParityOptions, run_parity
    from esc_deploy.validation.backends import parse_backends
    from esc_deploy.validation.images import load_inputs

    try:
        backends = parse_backends(args.backends)
        import esc

        if args.checkpoint:
            model = esc.load_model(args.checkpoint)
        else:
            from esc_deploy.common.defaults import default_model

            model = default_model()
        inputs = load_inputs(
            scale=model.config.scale,
            min_side=model.config.min_side,
            folder=args.images,
            max_side=args.max_side or None,
        )
        options = ParityOptions(
            backends=backends,
            trt_precision=args.trt_precision,
            engine=args.engine,
            plugin=args.plugin,
            work_dir=args.report_dir,
            progress=sys.stderr.isatty(),
            calibration=args.calibration,
            calibration_shape=parse_side_pair(args.calibration_shape),
        )
    except (ValueError, OSError) as exc:  # CheckpointError is a ValueError
        fail(str(exc))
    print(f"{len(inputs)} inputs: " + ", ".join(f"{i.name} {i.size[0]}x{i.size[1]}" for i in inputs))
    result = run_parity(model, inputs, options, log=lambda line: print(line, flush=True))
    if args.save_outputs:
        for r in result.results:
            if r.run is not None:
                r.run.save(args.report_dir / "outputs" / f"{r.name}.npz")
    paths = write_parity_report(result, args.report_dir)
    print()
    for line in result.lines():
        print(line)
    print(f"{'PASS' if result.passed else 'FAIL'} in {result.seconds:.1f} s; report: {paths['markdown']}")
    return 0 if result.passed else 1
