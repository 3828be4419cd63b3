"""esc-deploy upscale IN OUT [--backend torch|onnxruntime|tensorrt]: an image, or every image of a folder.

Every image is kept: the output's format follows its suffix (PNG, JPEG with --quality, lossless WebP,
TIFF); alpha is upscaled by the model as a gray image and kept; gray stays gray (L) and 16-bit PNG/TIFF
stays 16-bit (esc_deploy/runtime/images.py). A run never writes over an input, never maps two inputs to
one output and never writes a folder's images into a file name: such runs are refused before anything
is written (serving/upscale_jobs.py). A folder streams: headers are checked first, then each image is
decoded, upscaled and written (atomically) before the next is read. An unreadable image is one line and
the others are still done (exit 2 at the end); --skip-existing resumes a long run; Ctrl-C is one line,
exit 130, and leaves no partial file.

The backend's facts (scale, window, input limits) come from what it runs: the checkpoint, the ONNX
metadata, or the engine's sidecar. Images are tiled (esc/tiling.py) with tile starts on the window
grid, --batch tiles per call; inputs below the minimum side are reflect-padded.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from esc_deploy.common.command import ArgumentParser, error, interrupted, quiet_exporter_logs

if TYPE_CHECKING:
    from esc_deploy.runtime.runner import Runner
    from esc_deploy.runtime.tiles import TilePlan
    from esc_deploy.serving.upscale_jobs import Job

BACKENDS = ("torch", "onnxruntime", "tensorrt")
DEFAULT_TILE = 192  # input pixels; ONNX Runtime on a CPU needs about 2 GiB for a 192x192 tile of ESC-light
DEFAULT_OVERLAP = 32


def build_parser() -> ArgumentParser:
    from esc_deploy.common.defaults import DEFAULT_ONNX
    from esc_deploy.runtime.images import DEFAULT_QUALITY, WRITE_FORMATS

    p = ArgumentParser(prog="esc-deploy upscale", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("input", type=Path, help="an image, or a folder of images")
    p.add_argument("output", type=Path, help=f"an image file ({', '.join(WRITE_FORMATS)}) or a folder")
    p.add_argument("--backend", choices=BACKENDS, default="torch")
    p.add_argument("--checkpoint", type=Path, help="torch: official checkpoint (default: seeded default model)")
    p.add_argument("--attention", help="torch: naive, sdpa, flex or fused (default: the device's)")
    p.add_argument("--onnx", type=Path, default=DEFAULT_ONNX, help="onnxruntime: ONNX file (default: %(default)s)")
    p.add_argument("--engine", type=Path, help="tensorrt: engine file (its sidecar JSON beside it)")
    p.add_argument("--tile", type=int, help=f"largest tile side, input pixels (default: {DEFAULT_TILE}, or the "
                   "engine's largest input if smaller)")  # fmt: skip
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="tile overlap (default: %(default)s)")
    p.add_argument("--batch", type=int, default=1, help="tiles per backend call (default: %(default)s)")
    p.add_argument("--quality", type=int, default=DEFAULT_QUALITY, help="JPEG quality 1-95 (default: %(default)s)")
    p.add_argument("--suffix", help="folder outputs: write this format (.png, .jpg, ...) instead of each input's")
    p.add_argument("--skip-existing", action="store_true", help="leave outputs that exist (resume a run)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def check_numbers(args: argparse.Namespace) -> None:
    if args.tile is not None and args.tile < 1:
        raise ValueError(f"--tile must be positive, found {args.tile}")
    if args.overlap < 0 or (args.batch is not None and args.batch < 1):  # None: the media command's default
        raise ValueError(f"--overlap must be >= 0 and --batch positive, found {args.overlap} and {args.batch}")
    if not 1 <= args.quality <= 100:
        raise ValueError(f"--quality must be in 1..100, found {args.quality}")


def main(argv: list[str] | None = None) -> int:
    quiet_exporter_logs()
    try:
        return run(build_parser().parse_args(argv))
    except KeyboardInterrupt:  # the image being written is a temporary file, removed on the way out
        return interrupted()


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from esc_deploy.runtime.runner import open_runner
    from esc_deploy.runtime.tiles import plan_tiles
    from esc_deploy.serving.upscale_jobs import plan_jobs

    try:
        check_numbers(args)
        work = plan_jobs(args.input, args.output, suffix=args.suffix, skip_existing=args.skip_existing)
        for line in work.unreadable:
            error(line)
        for path in work.skipped:
            print(f"{path} exists: skipped")
        if not work.jobs:
            return 2 if work.unreadable else 0
        runner = open_runner(args.backend, checkpoint=args.checkpoint, attention=args.attention, onnx=args.onnx,
                             engine=args.engine)  # fmt: skip
        facts = runner.facts
        tile = args.tile if args.tile is not None else min(DEFAULT_TILE, facts.max_side or DEFAULT_TILE)
        plans = {job.target: plan_tiles(facts, job.source.size, max_tile=tile, overlap=args.overlap,
                                        batch=args.batch) for job in work.jobs}  # fmt: skip
    except (ValueError, OSError, RuntimeError) as exc:  # CheckpointError is a ValueError
        return error(f"upscale: {exc}")
    failed = len(work.unreadable)
    total = sum(plans[job.target].count(job.source.size) for job in work.jobs)
    with runner, tqdm(total=total, unit="tile", disable=True if args.no_progress else None, leave=False) as bar:

        def advance(tiles: int) -> None:
            bar.update(tiles)

        for job in work.jobs:
            try:  # one image at a time: its arrays are freed when upscale_one returns
                line = upscale_one(job, runner, plans[job.target], quality=args.quality, progress=advance)
            except (ValueError, OSError, RuntimeError, MemoryError) as exc:  # this image only: the others still run
                where = "" if str(job.source.path) in str(exc) else f"{job.source.path}: "
                error(f"upscale: {where}{exc}")
                failed += 1
                continue
            tqdm.write(line)
    return 2 if failed else 0


def upscale_one(job: Job, runner: Runner, plan: TilePlan, *, quality: int, progress: Callable[[int], None]) -> str:
    """Decode, upscale and write one image; the line that reports it."""
    from esc_deploy.runtime.images import read_image, write_image
    from esc_deploy.runtime.tiles import upscale_array

    picture = read_image(job.source.path)
    facts = runner.facts
    planes = upscale_array(picture.planes(), runner, scale=facts.scale, plan=plan, min_hw=facts.min_hw,
                           progress=progress)  # fmt: skip
    result = picture.with_planes(planes)
    write_image(job.target, result, quality=quality)
    (h, w), (oh, ow) = picture.size, result.size
    return f"{job.source.path} {w}x{h} {picture.mode} -> {job.target} {ow}x{oh}"
