"""Upscale an image through a running Triton server, tiling images larger than the model accepts.

    python serving/triton_client.py --url localhost:8000 --model esc-light_x4_python in.png out.png
    python serving/triton_client.py --protocol grpc --url localhost:8001 --model esc-light_x4 a.png b.png
    python serving/triton_client.py --url localhost:8000 --model esc-light_x4_image_bytes in.png out.png

An image model (``<name>_image``, ``<name>_image_bytes``: serving/model_repository/image_model.py) tiles
in the server: the client sends the whole picture (the bytes model: the file as it is, alpha, gray and
16 bits kept) and writes the PNG it gets back; the tiling options do not apply.

Scale, tile alignment (the attention window) and the model's minimum and maximum input come from the
model's config; images and tiles below the minimum are reflect-padded and the result cropped. Tiles go
out as up to --concurrency requests at once, for the server's dynamic batching to merge. The library is
serving/client/triton_io.py (tiling: esc/tiling.py); no torch is imported. Errors: one line on stderr
naming the model, exit 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from esc_deploy.common.command import ArgumentParser, error
from esc_deploy.serving.client.triton_io import (
    DEFAULT_TIMEOUT_S,
    TilePlan,
    TritonError,
    TritonUpscaler,
    connect,
    plan_tiles,
    read_image,
    upscale_image,
    write_image,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="server HOST:PORT (HTTP 8000, gRPC 8001 by default)")
    parser.add_argument("--model", required=True, help="model name in the repository")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument("--max-tile", type=int, help="largest tile side (default: the model's maximum input)")
    parser.add_argument("--overlap", type=int, default=32, help="tile overlap in input pixels (default 32)")
    parser.add_argument("--align", type=int, help="tile start alignment (default: the model's window size)")
    parser.add_argument("--concurrency", type=int, default=4, help="tile requests in flight (default 4)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds per request, queueing included ({DEFAULT_TIMEOUT_S:.0f})")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar over the tiles")
    parser.add_argument("input", type=Path, help="input image (PNG, 8-bit RGB)")
    parser.add_argument("output", type=Path, help="output PNG")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        upscaler = connect(args.url, args.model, args.protocol, timeout_s=args.timeout)
        info = upscaler.info
        if info.image_io is not None:
            return _whole_image(upscaler, args.input, args.output)
        image = read_image(args.input)
        plan = plan_tiles(
            info,
            image.shape[2:],
            max_tile=args.max_tile,
            overlap=args.overlap,
            align=args.align,
            concurrency=args.concurrency,
        )
        start = time.perf_counter()
        with _progress(args.no_progress, image.shape[2:], plan) as bar:
            result = upscale_image(
                image, upscaler, scale=info.scale, plan=plan, min_hw=info.min_hw, progress=bar.update
            )
        elapsed = time.perf_counter() - start
        write_image(args.output, result)
    except (ValueError, OSError, TritonError) as exc:
        where = "" if "model '" in str(exc) else f"model {args.model!r}: "
        return error(f"{where}{exc}")
    h, w = image.shape[2:]
    s = info.scale
    print(f"{args.input} {w}x{h} -> {args.output} {w * s}x{h * s} in {elapsed:.3f} s (tile {plan.tile})")
    return 0


def _whole_image(upscaler: TritonUpscaler, source: Path, target: Path) -> int:
    """An image model: the picture goes whole, the server tiles."""
    start = time.perf_counter()
    h, w = upscaler.upscale_file(source, target)
    s = upscaler.info.scale
    elapsed = time.perf_counter() - start
    print(f"{source} {w}x{h} -> {target} {w * s}x{h * s} in {elapsed:.3f} s (tiled by {upscaler.info.name})")
    return 0


def _progress(disabled: bool, image_hw: tuple[int, int], plan: TilePlan) -> Any:  # a tqdm bar over the tiles
    from tqdm import tqdm

    from esc.tiling import tile_grid

    h, w = image_hw
    total = len(tile_grid(h, w, tile=plan.tile, overlap=plan.overlap, align=plan.align))
    return tqdm(total=total, unit="tile", disable=True if disabled else None, leave=False, file=sys.stderr)
