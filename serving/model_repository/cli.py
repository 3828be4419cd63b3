"""Write a Triton model repository for an exported ESC model (TensorRT engine and/or ONNX file).

    python serving/make_triton_repo.py --onnx build/esc-light_x4.onnx --output triton_repo
    python serving/make_triton_repo.py --engine build/esc-light_x4.plan \\
        --plugin build/plugin/libesc_trt_plugin.so --onnx build/esc-light_x4.onnx --output triton_repo

With --onnx alone the repository serves the model on CPUs (ONNX Runtime backend and Python backend);
with --engine it also serves the TensorRT engine. The image models (<name>_image: pixels in and out;
<name>_image_bytes: a PNG/JPEG file in, a PNG out) tile in the server and call one of those (--image-target).
Scale, window and limits come from the ONNX metadata and the engine's sidecar. The library is
serving/model_repository/writer.py. Bad input: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from esc_deploy.common.command import ArgumentParser, error
from esc_deploy.serving.model_repository.writer import (
    DEFAULT_IMAGE_MAX_PIXELS,
    DEFAULT_IMAGE_OVERLAP,
    DEFAULT_ORT_MAX_BATCH,
    DEFAULT_ORT_MAX_INPUT,
    DEFAULT_TRITON_IMAGE,
    VARIANTS,
    format_hw,
    make_repository,
    parse_hw,
    spec_from_files,
)


def _variants(text: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(VARIANTS)}, got {text!r}")
    return names


def _hw(text: str) -> tuple[int, int]:
    try:
        return parse_hw(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", type=Path, help="exported ONNX model: the onnx and python variants")
    parser.add_argument("--engine", type=Path, action="append",
                        help="TensorRT engine (.plan), sidecar beside it: the plan variant; repeat it for the same "
                        "model built for other compute capabilities (cc_model_filenames)")  # fmt: skip
    parser.add_argument("--plugin", type=Path, help="plugin library the engine needs (loaded by Triton)")
    parser.add_argument("--output", type=Path, required=True, help="model repository folder to create")
    parser.add_argument("--name", help="model name (default: the engine's, else the ONNX file's name)")
    parser.add_argument("--variants", type=_variants, help=f"subset of {','.join(VARIANTS)} (default: all possible)")
    parser.add_argument("--max-batch", type=int, help="lower the engine profile's maximum batch")
    parser.add_argument("--ort-max-batch", type=int, default=DEFAULT_ORT_MAX_BATCH,
                        help=f"max_batch_size of the ONNX Runtime variants ({DEFAULT_ORT_MAX_BATCH})")  # fmt: skip
    parser.add_argument("--ort-max-input", type=_hw, default=DEFAULT_ORT_MAX_INPUT, metavar="HxW",
                        help=f"largest input (tile) of the ONNX Runtime variants "
                        f"(default {format_hw(DEFAULT_ORT_MAX_INPUT)})")  # fmt: skip
    parser.add_argument("--instances", type=int, default=1, help="engine instances on the GPU (default 1)")
    parser.add_argument("--queue-delay-us", type=int, default=100, help="dynamic batching delay (default 100)")
    parser.add_argument("--triton-image", default=DEFAULT_TRITON_IMAGE, help="container for docker_triton.sh")
    parser.add_argument("--no-image", action="store_true", help="no image models, the tensor models alone")
    parser.add_argument("--image-target", choices=VARIANTS,
                        help="tensor model the image models call (default: plan if written, else python)")  # fmt: skip
    parser.add_argument("--image-max-pixels", type=int, default=DEFAULT_IMAGE_MAX_PIXELS,
                        help=f"image models' largest height*width ({DEFAULT_IMAGE_MAX_PIXELS})")  # fmt: skip
    parser.add_argument("--image-overlap", type=int, default=DEFAULT_IMAGE_OVERLAP,
                        help=f"tile overlap of the image models, input pixels ({DEFAULT_IMAGE_OVERLAP})")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        spec = spec_from_files(
            onnx=args.onnx,
            engine=args.engine[0] if args.engine else None,
            more_engines=tuple(args.engine[1:]) if args.engine else (),
            name=args.name,
            plugin=args.plugin,
            variants=args.variants or (),
            max_batch=args.max_batch,
            ort_max_batch=args.ort_max_batch,
            ort_max_input=args.ort_max_input,
            instances=args.instances,
            queue_delay_us=args.queue_delay_us,
            triton_image=args.triton_image,
            image=not args.no_image,
            image_target=args.image_target,
            image_max_pixels=args.image_max_pixels,
            image_overlap=args.image_overlap,
        )
        result = make_repository(spec, args.output, overwrite=args.overwrite)
    except (ValueError, OSError) as exc:
        return error(str(exc))
    print(f"wrote {result.repo} with models: {', '.join(result.models)}")
    print(f"start Triton here ({result.repo / 'launch_triton.sh'}):\n  {shlex.join(result.launch)}")
    print(f"or in a container ({result.repo / 'docker_triton.sh'}):\n  {shlex.join(result.docker)}")
    if "plan" not in spec.selected:
        print(f"or with PyTriton's server (CPU): python serving/triton_server.py --repository {result.repo}")
    return 0
