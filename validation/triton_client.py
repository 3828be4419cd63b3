"""Upscale a PNG through a running Triton server, tiling images larger than the model accepts.

    python validation/triton_client.py --url localhost:8000 --model esc-light_x4 in.png out.png
    python validation/triton_client.py --protocol grpc --url localhost:8001 --model esc-light_x4 a.png b.png

The library is validation/triton_io.py (tiling: esc/tiling.py). Errors: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from export.cli import ArgumentParser
from validation.triton_io import TritonError, connect, plan_tiles, read_image, upscale_image, write_image


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="server HOST:PORT (HTTP 8000, gRPC 8001 by default)")
    parser.add_argument("--model", required=True, help="model name in the repository")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument("--max-tile", type=int, help="largest tile side (default: the engine profile's maximum)")
    parser.add_argument("--overlap", type=int, default=32, help="tile overlap in input pixels (default 32)")
    parser.add_argument("--align", type=int, help="tile start alignment (default: the model's window size)")
    parser.add_argument("--scale", type=int, help="upscaling factor when the model config does not record it")
    parser.add_argument("input", type=Path, help="input image (PNG, 8-bit RGB)")
    parser.add_argument("output", type=Path, help="output PNG")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        image = read_image(args.input)
        upscaler = connect(args.url, args.model, args.protocol)
        scale = args.scale or upscaler.info.scale
        if scale is None:
            raise ValueError(f"model {args.model!r} does not record its scale (esc_scale); pass --scale")
        plan = plan_tiles(
            upscaler.info, image.shape[2:], max_tile=args.max_tile, overlap=args.overlap, align=args.align
        )
        start = time.perf_counter()
        result = upscale_image(image, upscaler, scale=scale, plan=plan)
        elapsed = time.perf_counter() - start
        write_image(args.output, result)
    except (ValueError, OSError, TritonError) as exc:
        print(f"triton_client: error: {exc}", file=sys.stderr)
        return 2
    h, w = image.shape[2:]
    print(f"{args.input} {w}x{h} -> {args.output} {w * scale}x{h * scale} in {elapsed:.3f} s (tile {plan.tile})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
