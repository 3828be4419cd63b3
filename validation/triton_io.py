"""Upscaling images through a running Triton server: PNG I/O, the model's limits, the tiling driver.

tritonclient is imported only inside :func:`connect`, so the rest is usable (and tested) without it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from esc.tiling import upscale_tiled
from export.triton_repo import PARAM_MAX_HW, PARAM_SCALE, PARAM_WINDOW

Protocol = Literal["http", "grpc"]


class TritonError(RuntimeError):
    """The server could not be reached, or refused the model or the request (one-line message)."""


@dataclass(frozen=True)
class ModelInfo:
    """What the client needs from the server's model config."""

    name: str
    input_name: str
    output_name: str
    max_batch_size: int
    max_hw: tuple[int, int] | None  # largest input the engine's profile accepts
    scale: int | None
    window_size: int | None


def read_image(path: Path) -> np.ndarray:
    """An image file as [1, 3, H, W] float32 RGB in [0, 1] (alpha dropped, greyscale expanded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
    except (OSError, UnidentifiedImageError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from None
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None] / 255.0)  # (1, 3, H, W)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[1, 3, H, W] float in [0, 1] -> [H, W, 3] uint8, clipped and rounded to nearest."""
    if image.ndim != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"expected one RGB image [1, 3, H, W], got shape {image.shape}")
    return np.clip(np.rint(image[0].transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)


def write_image(path: Path, image: np.ndarray) -> None:
    """Write [1, 3, H, W] as an 8-bit RGB PNG, atomically (temporary file, then rename)."""
    from PIL import Image

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        Image.fromarray(to_uint8(image), mode="RGB").save(tmp, format="PNG")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def parse_model_info(config: dict[str, Any]) -> ModelInfo:
    """Model limits from Triton's model config as JSON (HTTP ``get_model_config``, or gRPC's
    ``get_model_config(as_json=True)["config"]``)."""
    try:
        name = str(config["name"])
        (inp,), (out,) = config["input"], config["output"]
    except (KeyError, ValueError, TypeError):
        raise ValueError(f"expected a model config with one input and one output, got keys {list(config)}") from None
    params = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
    max_hw = None
    if PARAM_MAX_HW in params:
        h, w = (int(v) for v in params[PARAM_MAX_HW].split(","))
        max_hw = (h, w)
    return ModelInfo(
        name=name,
        input_name=str(inp["name"]),
        output_name=str(out["name"]),
        max_batch_size=int(config.get("max_batch_size", 0)),
        max_hw=max_hw,
        scale=int(params[PARAM_SCALE]) if PARAM_SCALE in params else None,
        window_size=int(params[PARAM_WINDOW]) if PARAM_WINDOW in params else None,
    )


@dataclass(frozen=True)
class TilePlan:
    tile: tuple[int, int]
    overlap: int
    align: int
    tiles_per_call: int


def plan_tiles(
    info: ModelInfo,
    image_hw: tuple[int, int],
    *,
    max_tile: int | None = None,
    overlap: int = 32,
    align: int | None = None,
) -> TilePlan:
    """Tile size: ``--max-tile``, else the profile's maximum, else the whole image (one call).
    Alignment: ``align``, else the model's window size (tiles share the image's windows), else 1."""
    if max_tile is not None:
        if max_tile < 1:
            raise ValueError(f"--max-tile must be positive, got {max_tile}")
        tile = (max_tile, max_tile)
    elif info.max_hw is not None:
        tile = info.max_hw
    else:
        tile = image_hw
    if info.max_hw is not None and (tile[0] > info.max_hw[0] or tile[1] > info.max_hw[1]):
        raise ValueError(f"--max-tile {max_tile} exceeds the model's maximum input {info.max_hw}")
    window = align if align is not None else (info.window_size or 1)
    if window > 1 and min(tile) - overlap < window:
        window = 1  # tiles too small to keep the stride a multiple of the window
    overlap = min(overlap, min(tile) - 1)
    batch = max(info.max_batch_size, 1)
    return TilePlan(tile=tile, overlap=overlap, align=window, tiles_per_call=batch)


def upscale_image(
    image: np.ndarray, upscale: Callable[[np.ndarray], np.ndarray], *, scale: int, plan: TilePlan
) -> np.ndarray:
    """Upscale [1, 3, H, W] with ``upscale`` on overlapping tiles (esc.tiling rules)."""
    return upscale_tiled(
        image,
        upscale,
        scale=scale,
        tile=plan.tile,
        overlap=plan.overlap,
        align=plan.align,
        tiles_per_call=plan.tiles_per_call,
    )


class TritonUpscaler:
    """``__call__``: [n, 3, h, w] float32 -> [n, 3, h*s, w*s] through one model on a Triton server."""

    def __init__(self, client: Any, module: Any, info: ModelInfo) -> None:
        self.client, self.module, self.info = client, module, info

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.info.max_batch_size > 0 and len(batch) > self.info.max_batch_size:
            step = self.info.max_batch_size
            return np.concatenate([self(batch[i : i + step]) for i in range(0, len(batch), step)])
        inp = self.module.InferInput(self.info.input_name, list(batch.shape), "FP32")
        inp.set_data_from_numpy(batch)
        out = self.module.InferRequestedOutput(self.info.output_name)
        try:
            result = self.client.infer(self.info.name, inputs=[inp], outputs=[out])
        except Exception as exc:  # tritonclient raises InferenceServerException and transport errors
            raise TritonError(f"inference on {self.info.name!r} failed: {_one_line(exc)}") from None
        return np.asarray(result.as_numpy(self.info.output_name), dtype=np.float32)


def connect(url: str, model: str, protocol: Protocol) -> TritonUpscaler:
    """A client for ``model`` on the server at ``url`` (``HOST:PORT``), checked to be ready."""
    if protocol == "http":
        import tritonclient.http as module
    elif protocol == "grpc":
        import tritonclient.grpc as module
    else:
        raise ValueError(f"protocol must be 'http' or 'grpc', got {protocol!r}")
    try:
        client = module.InferenceServerClient(url=url)
        if not client.is_server_live():
            raise TritonError(f"Triton server at {url} is not live")
        if not client.is_model_ready(model):
            raise TritonError(f"model {model!r} is not ready on {url} (is it in the repository and loaded?)")
        if protocol == "grpc":
            config = client.get_model_config(model, as_json=True)["config"]
        else:
            config = client.get_model_config(model)
    except TritonError:
        raise
    except Exception as exc:  # connection refused, DNS, timeouts: tritonclient wraps them differently
        raise TritonError(f"cannot talk to Triton at {url} ({protocol}): {_one_line(exc)}") from None
    return TritonUpscaler(client, module, parse_model_info(config))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
