"""Tiled upscaling with feathered blending, for images larger than a backend accepts.

Every backend (PyTorch, ONNX Runtime, TensorRT, Triton) shares this one implementation; it knows
nothing about them: it takes ``upscale``, any callable from ``[n, 3, h, w]`` to ``[n, 3, h*s, w*s]``.
``engines/cpp/src/tiling.cpp`` repeats these rules in C++ and a test compares the two.

Rules, per axis (rows and columns independently), in input pixels, with ``align`` >= 1:

* ``size <= tile``: one tile covering the axis, weight 1. The whole image in one tile is exactly
  untiled inference (``upscale`` is called once, on the image itself).
* otherwise ``stride = (tile - overlap)`` rounded down to a multiple of ``align``; starts are
  ``0, stride, 2*stride, ...`` while the tile ends before the image does, and the last start is
  ``last = size - tile`` rounded up to a multiple of ``align`` (with ``align = 1``: the last tile
  is moved back to end flush with the image). Tiles are ``tile`` long except a last one starting
  past ``size - tile``, which is cut at the image end. Consecutive tiles overlap by ``overlap`` or
  more; the last strip may overlap by more (and then reach into a third tile).
* blend weights, in output pixels (``scale`` times the input ones): a tile ramps up over its overlap
  ``o`` with the previous tile as ``(j + 0.5) / o`` for ``j = 0..o-1``, ramps down symmetrically over
  its overlap with the next tile, is 1 elsewhere (the minimum of the two ramps where they meet), and
  is then divided by the sum of all tiles' weights at that pixel. Two ramps over one overlap already
  sum to 1; the division matters only where three tiles meet.
* the 2-D weight of a tile is the outer product of its row and column weights, so the weights of
  all tiles sum to 1 at every output pixel.

The arithmetic is numpy; torch is imported only when the image is a torch tensor, so the Triton
client (numpy in, numpy out) never imports it. ``concurrency`` > 1 keeps that many calls in flight
(threads; for servers that batch concurrent requests), and results are still accumulated in grid
order, so the output is the same bits as with one call at a time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

    ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)
else:
    ArrayT = TypeVar("ArrayT")


Span = tuple[int, int]  # (start, length) in input pixels


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return pair[0], pair[1]


def tile_spans(size: int, tile: int, overlap: int, align: int = 1) -> tuple[Span, ...]:
    """``(start, length)`` of each tile along an axis of ``size`` pixels (see the module docstring)."""
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    if tile < 1:
        raise ValueError(f"tile must be positive, got {tile}")
    if align < 1:
        raise ValueError(f"align must be positive, got {align}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile={tile}), got {overlap}")
    if size <= tile:
        return ((0, size),)
    stride = (tile - overlap) // align * align
    if stride < 1:
        raise ValueError(f"tile - overlap = {tile - overlap} must be at least align = {align}")
    last = -(-(size - tile) // align) * align  # first multiple of align at or after size - tile
    starts = [0]
    while starts[-1] + tile < size:
        starts.append(min(starts[-1] + stride, last))
    return tuple((s, min(tile, size - s)) for s in starts)


def axis_weights(spans: tuple[Span, ...], scale: int) -> list[np.ndarray]:
    """Normalised linear-ramp weights of each tile, in output pixels (float64, sum 1 per pixel)."""
    raw: list[np.ndarray] = []
    for i, (start, length) in enumerate(spans):
        out_len = length * scale
        pos = np.arange(out_len, dtype=np.float64) + 0.5  # pixel centres from the tile start
        w = np.ones(out_len, dtype=np.float64)
        if i > 0:
            left = (spans[i - 1][0] + spans[i - 1][1] - start) * scale
            w = np.minimum(w, pos / left)
        if i + 1 < len(spans):
            right = (start + length - spans[i + 1][0]) * scale
            w = np.minimum(w, (out_len - pos) / right)
        raw.append(w)
    size = spans[-1][0] + spans[-1][1]
    total = np.zeros(size * scale, dtype=np.float64)
    for (start, _), w in zip(spans, raw, strict=True):
        total[start * scale : start * scale + len(w)] += w
    return [w / total[s * scale : s * scale + len(w)] for (s, _), w in zip(spans, raw, strict=True)]


def tile_grid(
    height: int, width: int, *, tile: int | tuple[int, int], overlap: int, align: int = 1
) -> list[tuple[int, int, int, int]]:
    """Every tile as ``(y0, x0, h, w)`` in input pixels, row by row."""
    th, tw = _pair(tile, "tile")
    rows, cols = tile_spans(height, th, overlap, align), tile_spans(width, tw, overlap, align)
    return [(y, x, h, w) for y, h in rows for x, w in cols]


def upscale_tiled(
    image: ArrayT,
    upscale: Callable[[ArrayT], ArrayT],
    *,
    scale: int,
    tile: int | tuple[int, int],
    overlap: int,
    align: int = 1,
    tiles_per_call: int = 1,
    concurrency: int = 1,
    progress: Callable[[int], None] | None = None,
) -> ArrayT:
    """Upscale ``image`` [B, 3, H, W] by ``scale`` with ``upscale`` applied to overlapping tiles.

    ``tile`` is the largest input side ``upscale`` accepts (an int, or ``(height, width)``);
    ``overlap`` is in input pixels; tile starts are multiples of ``align`` (ESC: its window size,
    so that the tiles' attention windows coincide with those of the whole image). Up to
    ``tiles_per_call`` tiles of one shape, for all B images, go into one call (a batch of
    ``B * n``); up to ``concurrency`` calls run at once (threads). ``progress(n)`` is called after
    each call with the number of tiles it covered. Returns [B, 3, H*scale, W*scale] of the input's
    kind (numpy array, or torch tensor on the upscaler's device), float32 (float64 for float64
    outputs).
    """
    if image.ndim != 4:
        raise ValueError(f"expected an image batch [B, C, H, W], got shape {tuple(image.shape)}")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    if tiles_per_call < 1:
        raise ValueError(f"tiles_per_call must be positive, got {tiles_per_call}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be positive, got {concurrency}")
    th, tw = _pair(tile, "tile")
    b, c, height, width = (int(d) for d in image.shape)
    rows, cols = tile_spans(height, th, overlap, align), tile_spans(width, tw, overlap, align)
    if len(rows) == 1 and len(cols) == 1:
        result = _checked(upscale(image), (b, c, height * scale, width * scale))
        if progress is not None:
            progress(1)
        return result

    row_w, col_w = axis_weights(rows, scale), axis_weights(cols, scale)
    chunks = list(_batches(rows, cols, tiles_per_call))

    def call(chunk: list[tuple[int, int]]) -> Any:
        (_, h), (_, w) = rows[chunk[0][0]], cols[chunk[0][1]]
        crops = [image[:, :, rows[i][0] : rows[i][0] + h, cols[j][0] : cols[j][0] + w] for i, j in chunk]
        batch = _concat(crops)  # (n*B, C, h, w)
        return _checked(upscale(batch), (len(chunk) * b, c, h * scale, w * scale))

    out: Any = None
    for chunk, result in zip(chunks, _in_order(call, chunks, concurrency), strict=True):
        (_, h), (_, w) = rows[chunk[0][0]], cols[chunk[0][1]]
        if out is None:
            out = _zeros_like(result, (b, c, height * scale, width * scale))
        for k, (i, j) in enumerate(chunk):
            weight = np.outer(row_w[i], col_w[j])  # (h*scale, w*scale)
            y0, x0 = rows[i][0] * scale, cols[j][0] * scale
            part = result[k * b : (k + 1) * b] * _like(out, weight)
            out[:, :, y0 : y0 + h * scale, x0 : x0 + w * scale] += part
        if progress is not None:
            progress(len(chunk))
    if out is None:  # unreachable: the grid has at least two tiles here
        raise RuntimeError("empty tile grid")
    return out


def _in_order(call: Callable[[Any], Any], items: list[Any], concurrency: int) -> Iterator[Any]:
    """``call(item)`` for each item, at most ``concurrency`` at once, results yielded in item order."""
    if concurrency == 1 or len(items) == 1:
        yield from map(call, items)
        return
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tile") as pool:
        pending: deque[Future[Any]] = deque()
        try:
            for item in items:
                if len(pending) == concurrency:
                    yield pending.popleft().result()
                pending.append(pool.submit(call, item))
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:  # an error (or an abandoned generator): start nothing new
                future.cancel()


def _batches(rows: tuple[Span, ...], cols: tuple[Span, ...], size: int) -> Iterator[list[tuple[int, int]]]:
    """Tile indices (row, column) in groups of at most ``size`` tiles that share one shape."""
    groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for i, (_, h) in enumerate(rows):
        for j, (_, w) in enumerate(cols):
            groups.setdefault((h, w), []).append((i, j))
    for members in groups.values():
        for k in range(0, len(members), size):
            yield members[k : k + size]


def _is_torch(value: object) -> bool:
    """A torch tensor, known without importing torch (a numpy-only process never has one)."""
    return type(value).__module__.split(".")[0] == "torch"


def _concat(crops: list[Any]) -> Any:
    if _is_torch(crops[0]):
        import torch

        return torch.cat(crops)
    return np.concatenate(crops)


def _checked(result: ArrayT, shape: tuple[int, int, int, int]) -> ArrayT:
    if tuple(result.shape) != shape:
        raise ValueError(f"upscale returned shape {tuple(result.shape)}, expected {shape}")
    return result


def _zeros_like(result: Any, shape: tuple[int, ...]) -> Any:
    """A float32 (float64 for float64 results) accumulator of the result's kind and device."""
    if _is_torch(result):
        import torch

        dtype = torch.float64 if result.dtype == torch.float64 else torch.float32
        return torch.zeros(shape, dtype=dtype, device=result.device)
    np_dtype = np.float64 if result.dtype == np.float64 else np.float32
    return np.zeros(shape, dtype=np_dtype)


def _like(out: Any, weight: np.ndarray) -> Any:
    if _is_torch(out):
        import torch

        return torch.from_numpy(weight).to(device=out.device, dtype=out.dtype)
    return weight.astype(out.dtype)
