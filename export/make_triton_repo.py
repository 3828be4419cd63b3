"""Write a Triton model repository for an ESC TensorRT engine (and an ONNX Runtime CPU variant).

    python export/make_triton_repo.py --engine engines/esc-light_x4.plan \\
        --plugin build/plugin/libesc_trt_plugin.so --onnx engines/esc-light_x4.onnx --output triton_repo

The library is export/triton_repo.py; this is its command line. Bad input: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from export.cli import ArgumentParser
from export.triton_repo import DEFAULT_TRITON_IMAGE, make_repository, spec_from_engine


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", type=Path, required=True, help="TensorRT engine (.plan), sidecar beside it")
    parser.add_argument("--plugin", type=Path, help="plugin library the engine needs (loaded by Triton)")
    parser.add_argument("--onnx", type=Path, help="also serve this ONNX model with onnxruntime on CPU")
    parser.add_argument("--output", type=Path, required=True, help="model repository folder to create")
    parser.add_argument("--name", help="model name (default: the engine file name without its suffix)")
    parser.add_argument("--max-batch", type=int, help="max_batch_size; required without a sidecar")
    parser.add_argument("--instances", type=int, default=1, help="engine instances on the GPU (default 1)")
    parser.add_argument("--queue-delay-us", type=int, default=100, help="dynamic batching delay (default 100)")
    parser.add_argument("--scale", type=int, help="upscaling factor, recorded for clients (default: sidecar)")
    parser.add_argument("--window-size", type=int, help="attention window, for clients' tile alignment")
    parser.add_argument("--triton-image", default=DEFAULT_TRITON_IMAGE, help="container for docker_triton.sh")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        spec = spec_from_engine(
            args.engine,
            name=args.name,
            plugin=args.plugin,
            onnx=args.onnx,
            max_batch=args.max_batch,
            instances=args.instances,
            queue_delay_us=args.queue_delay_us,
            scale=args.scale,
            window_size=args.window_size,
            triton_image=args.triton_image,
        )
        result = make_repository(spec, args.output, overwrite=args.overwrite)
    except (ValueError, OSError) as exc:
        print(f"make_triton_repo: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {result.repo} with models: {', '.join(result.models)}")
    print(f"start Triton here ({result.repo / 'launch_triton.sh'}):\n  {shlex.join(result.launch)}")
    print(f"or in a container ({result.repo / 'docker_triton.sh'}):\n  {shlex.join(result.docker)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
