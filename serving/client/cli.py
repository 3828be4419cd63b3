"""Upscale an image through a running Triton server, tiling images larger than the model accepts.

    python serving/triton_client.py --url localhost:8000 --model esc-light_x4_python in.png out.png
    python serving/triton_client.py --protocol grpc --url localhost:8001 --model esc-light_x4 a.png b.png

Scale, tile alignment (the attention window) and the model's minimum and maximum input come from the
model's config; images and tiles below the minimum are reflect-padded and the result cropped. Tiles go
out as up to --concurrency requests at once, for the server's dynamic batching to merge. The image keeps
its alpha, gray and 16 bits, and its format follows the output suffix (esc_deploy/runtime/images.py);
the runner is esc_deploy/runtime/triton.py; no torch is imported. Errors: one line on stderr naming the
model, exit 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from esc_deploy.common.command import ArgumentParser, error, interrupted
from esc_deploy.runtime.images import read_image, write_image
from esc_deploy.runtime.tiles import DEFAULT_OVERLAP, TilePlan, plan_tiles, upscale_array
from esc_deploy.runtime.triton import DEFAULT_TIMEOUT_S, TritonError, connect


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="server HOST:PORT (HTTP 8000, gRPC 8001 by default)")
    parser.add_argument("--model", required=True, help="model name in the repository")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument("--max-tile", type=int, help="largest tile side (default: the model's maximum input)")
    parser.add_argument(
        "--overlap", type=int, default=DEFAULT_OVERLAP, help="tile overlap in input pixels (%(default)s)"
    )
    parser.add_argument("--align", type=int, help="tile start alignment (default: the model's window size)")
    parser.add_argument("--concurrency", type=int, default=4, help="tile requests in flight (default 4)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds per request, queueing included ({DEFAULT_TIMEOUT_S:.0f})")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar over the tiles")
    parser.add_argument("input", type=Path, help="input image (any format Pillow reads)")
    parser.add_argument("output", type=Path, help="output image (.png, .jpg, .webp, .tiff)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.output.exists() and args.input.exists() and args.output.samefile(args.input):
            raise ValueError(f"the output {args.output} is the input: choose another output")
        picture = read_image(args.input)
        with connect(args.url, args.model, args.protocol, timeout_s=args.timeout) as runner:
            facts = runner.facts
            plan = plan_tiles(facts, picture.size, max_tile=args.max_tile, overlap=args.overlap, align=args.align,
                              concurrency=args.concurrency)  # fmt: skip
            start = time.perf_counter()
            with _progress(args.no_progress, picture.size, plan) as bar:
                planes = upscale_array(picture.planes(), runner, scale=facts.scale, plan=plan, min_hw=facts.min_hw,
                                       progress=bar.update)  # fmt: skip
            elapsed = time.perf_counter() - start
        write_image(args.output, picture.with_planes(planes))
    except (ValueError, OSError, TritonError) as exc:
        where = "" if "model '" in str(exc) else f"model {args.model!r}: "
        return error(f"{where}{exc}")
    except KeyboardInterrupt:
        return interrupted()
    h, w = picture.size
    s = facts.scale
    print(f"{args.input} {w}x{h} -> {args.output} {w * s}x{h * s} in {elapsed:.3f} s (tile {plan.tile})")
    return 0


def _progress(disabled: bool, image_hw: tuple[int, int], plan: TilePlan) -> Any:  # a tqdm bar over the tiles
    from tqdm import tqdm

    return tqdm(total=plan.count(image_hw), unit="tile", disable=True if disabled else None, leave=False,
                file=sys.stderr)  # fmt: skip
