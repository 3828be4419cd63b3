"""esc-deploy upscale IN OUT [--backend torch|onnxruntime|tensorrt]: an image, or every image of a folder.

Each backend takes its model facts (scale, window, minimum side) from what it runs: the checkpoint,
the ONNX metadata, or the engine's sidecar. Images are tiled (esc/tiling.py) with tile starts on the
window grid, inputs below the minimum side are reflect-padded, and outputs are 8-bit PNGs written
atomically. Errors: one line, exit 2, nothing written for the image that failed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from esc_deploy.common.command import ArgumentParser, error, quiet_exporter_logs

BACKENDS = ("torch", "onnxruntime", "tensorrt")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DEFAULT_TILE = 192  # input pixels; ONNX Runtime on a CPU needs about 2 GiB for a 192x192 tile of ESC-light
DEFAULT_OVERLAP = 32

Upscale = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Upscaler:
    run: Upscale  # [n, 3, h, w] float32 -> [n, 3, h*s, w*s], for sides >= min_side
    scale: int
    window: int
    min_side: int
    max_tile: int | None  # the largest side the backend accepts (a TensorRT profile), or None
    describe: str


def build_parser() -> ArgumentParser:
    from esc_deploy.common.defaults import DEFAULT_ONNX

    p = ArgumentParser(prog="esc-deploy upscale", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("input", type=Path, help="an image, or a folder of images")
    p.add_argument("output", type=Path, help="a PNG file (image input) or a folder (folder input)")
    p.add_argument("--backend", choices=BACKENDS, default="torch")
    p.add_argument("--checkpoint", type=Path, help="torch: official checkpoint (default: seeded default model)")
    p.add_argument("--onnx", type=Path, default=DEFAULT_ONNX, help="onnxruntime: ONNX file (default: %(default)s)")
    p.add_argument("--engine", type=Path, help="tensorrt: engine file (its sidecar JSON beside it)")
    p.add_argument(
        "--tile", type=int, default=DEFAULT_TILE, help="largest tile side, input pixels (default: %(default)s)"
    )
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="tile overlap (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def torch_upscaler(checkpoint: Path | None) -> Upscaler:
    import torch

    import esc

    if checkpoint is not None:
        model = esc.load_model(checkpoint)
    else:
        from esc_deploy.common.defaults import default_model

        model = default_model()
    model.eval()
    config = model.config

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    name = str(checkpoint) if checkpoint else "the seeded default model"
    return Upscaler(run, config.scale, config.window_size, config.min_side, None, f"torch, {name}")


def onnxruntime_upscaler(onnx_path: Path) -> Upscaler:
    from esc_deploy.export.onnx_graph.metadata import read_model_config
    from esc_deploy.export.onnx_graph.ort_session import ort_session

    if not onnx_path.is_file():
        raise ValueError(f"{onnx_path}: no such ONNX file (python export/to_onnx.py writes it)")
    config = read_model_config(onnx_path)
    # Tiles repeat one shape, so the arena's buffers are reused: a 192x192 ESC-light x4 tile took 1.50 s here
    # instead of 2.06 s without it, at the same 1.7 GiB peak.
    session = ort_session(onnx_path, arena=True)
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: x})[0])

    return Upscaler(run, config.scale, config.window_size, config.min_side, None, f"onnxruntime, {onnx_path}")


def tensorrt_upscaler(engine: Path | None) -> Upscaler:
    from esc_deploy.export.trt.env import require_cuda_gpu

    if engine is None:
        raise ValueError("the tensorrt backend needs an engine (python export/build_engine.py writes one)")
    require_cuda_gpu()
    import torch

    from esc_deploy.serving.engine_runner import EngineRunner

    runner = EngineRunner(engine)
    config = runner.sidecar.model
    limit = min(runner.sidecar.profile.max[2:])

    def run(x: np.ndarray) -> np.ndarray:
        y = runner(torch.from_numpy(x).to(runner.device))
        torch.cuda.synchronize(runner.device)
        return y.float().cpu().numpy()

    return Upscaler(run, config.scale, config.window_size, config.min_side, limit, runner.describe())


def make_upscaler(args: argparse.Namespace) -> Upscaler:
    if args.backend == "torch":
        return torch_upscaler(args.checkpoint)
    if args.backend == "onnxruntime":
        return onnxruntime_upscaler(args.onnx)
    return tensorrt_upscaler(args.engine)


def jobs(source: Path, target: Path) -> list[tuple[Path, Path]]:
    """(input image, output PNG) pairs: one for a file, every image of a folder (sorted) for a folder."""
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"no {'/'.join(IMAGE_SUFFIXES)} images in {source}")
        if target.exists() and not target.is_dir():
            raise ValueError(f"{target} is a file; a folder input needs an output folder")
        return [(p, target / f"{p.stem}.png") for p in files]
    if not source.is_file():
        raise ValueError(f"{source}: no such image or folder")
    if target.is_dir():
        return [(source, target / f"{source.stem}.png")]
    return [(source, target)]


def upscale_image(
    upscaler: Upscaler, image: np.ndarray, *, tile: int, overlap: int, progress: Callable[[int], None]
) -> np.ndarray:
    from esc.tiling import upscale_tiled
    from esc_deploy.serving.client.triton_io import padded

    side = tile if upscaler.max_tile is None else min(tile, upscaler.max_tile)
    if side < upscaler.min_side:
        raise ValueError(f"tile {side} is below the model's minimum side {upscaler.min_side}")
    align = upscaler.window if side - overlap >= upscaler.window else 1
    run = padded(upscaler.run, (upscaler.min_side, upscaler.min_side), upscaler.scale)
    return upscale_tiled(image, run, scale=upscaler.scale, tile=side, overlap=min(overlap, side - 1),
                         align=align, progress=progress)  # fmt: skip


def tiles_of(image_hw: tuple[int, int], upscaler: Upscaler, tile: int, overlap: int) -> int:
    from esc.tiling import tile_grid

    side = tile if upscaler.max_tile is None else min(tile, upscaler.max_tile)
    align = upscaler.window if side - overlap >= upscaler.window else 1
    return len(tile_grid(*image_hw, tile=side, overlap=min(overlap, side - 1), align=align))


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from esc_deploy.serving.client.triton_io import read_image, write_image

    args = build_parser().parse_args(argv)
    quiet_exporter_logs()
    try:
        if args.tile < 1 or args.overlap < 0:
            raise ValueError(f"--tile must be positive and --overlap >= 0, found {args.tile} and {args.overlap}")
        pairs = jobs(args.input, args.output)
        upscaler = make_upscaler(args)
        images = [(src, dst, read_image(src)) for src, dst in pairs]  # every input readable before any output
        total = sum(tiles_of(img.shape[2:], upscaler, args.tile, args.overlap) for _, _, img in images)
        with tqdm(total=total, unit="tile", disable=True if args.no_progress else None, leave=False) as bar:

            def advance(tiles: int) -> None:
                bar.update(tiles)

            for src, dst, image in images:
                result = upscale_image(upscaler, image, tile=args.tile, overlap=args.overlap, progress=advance)
                dst.parent.mkdir(parents=True, exist_ok=True)
                write_image(dst, result)
                print(f"{src} {image.shape[3]}x{image.shape[2]} -> {dst} {result.shape[3]}x{result.shape[2]}")
    except (ValueError, OSError, RuntimeError) as exc:  # CheckpointError is a ValueError
        return error(f"upscale: {exc}")
    return 0
