"""The tile plan: how an image is cut for a runner, from the model's facts (esc/tiling.py holds the arithmetic).

* tile side: the one asked for, else the model's largest input, else the whole image (one call);
  a tile above the model's largest input or below its smallest is refused.
* alignment: tile starts on the model's window grid, so that tiles share the whole image's attention
  windows (1 where the tile is too small to keep a stride of whole windows).
* batch: ``batch`` tiles of one shape per call (``--batch``), else the model's batch shared among
  ``concurrency`` requests in flight (Triton's dynamic batching merges them).
* tiles and images below the model's smallest input are reflect-padded at the bottom and right, and the
  output cropped back (``padded``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from esc.tiling import tile_grid, upscale_tiled
from esc_deploy.runtime.facts import ModelFacts

Upscale = Callable[[np.ndarray], np.ndarray]
DEFAULT_OVERLAP = 32


@dataclass(frozen=True)
class TilePlan:
    tile: tuple[int, int]
    overlap: int
    align: int
    tiles_per_call: int
    concurrency: int = 1

    def count(self, image_hw: tuple[int, int]) -> int:
        """How many tiles an image of ``image_hw`` is cut into."""
        return len(tile_grid(*image_hw, tile=self.tile, overlap=self.overlap, align=self.align))


def plan_tiles(
    facts: ModelFacts,
    image_hw: tuple[int, int],
    *,
    max_tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    align: int | None = None,
    batch: int | None = None,
    concurrency: int = 1,
) -> TilePlan:
    """The plan for one image of ``image_hw`` (see the module docstring); ValueError for impossible asks."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be positive, got {concurrency}")
    if batch is not None and batch < 1:
        raise ValueError(f"batch must be positive, got {batch}")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    where = facts.source or "the model"
    if max_tile is not None:
        if max_tile < 1:
            raise ValueError(f"max tile must be positive, got {max_tile}")
        tile = (max_tile, max_tile)
        if facts.max_hw is not None and (tile[0] > facts.max_hw[0] or tile[1] > facts.max_hw[1]):
            raise ValueError(f"tile {max_tile} exceeds {where}'s maximum input {facts.max_hw}")
        if min(tile) < facts.min_side:
            raise ValueError(f"tile {max_tile} is below the model's minimum side {facts.min_side} ({where})")
    elif facts.max_hw is not None:
        tile = facts.max_hw
    else:
        tile = image_hw
    window = align if align is not None else facts.window
    if window < 1:
        raise ValueError(f"align must be positive, got {window}")
    if window > 1 and min(tile) - overlap < window:
        window = 1  # tiles too small to keep the stride a multiple of the window
    overlap = max(0, min(overlap, min(tile) - 1))
    if batch is not None:
        per_call = batch if facts.max_batch == 0 else min(batch, facts.max_batch)
    else:
        per_call = max(1, max(facts.max_batch, 1) // concurrency)
    return TilePlan(tile=tile, overlap=overlap, align=window, tiles_per_call=per_call, concurrency=concurrency)


def padded(upscale: Upscale, min_hw: tuple[int, int], scale: int) -> Upscale:
    """``upscale`` for inputs of any size: those below ``min_hw`` are reflect-padded at the bottom
    and right, and the output is cropped back to ``scale`` times the input."""

    def call(batch: np.ndarray) -> np.ndarray:
        h, w = batch.shape[2:]
        pad_h, pad_w = max(0, min_hw[0] - h), max(0, min_hw[1] - w)
        if not (pad_h or pad_w):
            return upscale(batch)
        big = np.pad(batch, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="reflect")
        return np.ascontiguousarray(upscale(big)[:, :, : h * scale, : w * scale])

    return call


def upscale_array(
    images: np.ndarray,
    upscale: Upscale,
    *,
    scale: int,
    plan: TilePlan,
    min_hw: tuple[int, int] = (1, 1),
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Upscale [B, 3, H, W] with ``upscale`` on the plan's tiles, padding images and tiles below ``min_hw``.
    A call carries ``plan.tiles_per_call`` tiles of all B images (``tiles_per_call // B`` tiles, at least one)."""
    per_call = max(1, plan.tiles_per_call // len(images))
    return upscale_tiled(
        images,
        padded(upscale, min_hw, scale),
        scale=scale,
        tile=plan.tile,
        overlap=plan.overlap,
        align=plan.align,
        tiles_per_call=per_call,
        concurrency=plan.concurrency,
        progress=progress,
    )
