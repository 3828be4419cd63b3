"""Upscaling images through a running Triton server: PNG I/O, the model's limits, the tiling driver.

The model's facts come from its config (``parameters`` written by serving/model_repository/writer.py): scale,
window size (tile alignment), minimum and maximum input side. Images and tiles below the minimum are
reflect-padded at the bottom and right and the result cropped; images above the maximum are tiled
(esc/tiling.py), with up to ``concurrency`` requests in flight so that the server's dynamic batching
can merge them. Nothing here imports torch; tritonclient is imported only inside :func:`connect`.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from esc.tiling import upscale_tiled
from esc_deploy.serving.model_repository.writer import PARAM_MAX_HW, PARAM_MIN_HW, PARAM_SCALE, PARAM_WINDOW

Protocol = Literal["http", "grpc"]
DEFAULT_TIMEOUT_S = 600.0
Upscale = Callable[[np.ndarray], np.ndarray]


class TritonError(RuntimeError):
    """The server could not be reached, or refused the model or the request (one-line message)."""


@dataclass(frozen=True)
class ModelInfo:
    """What the client needs from the server's model config."""

    name: str
    input_name: str
    output_name: str
    max_batch_size: int
    scale: int
    window_size: int
    min_hw: tuple[int, int]  # smallest input the model accepts (pad below it)
    max_hw: tuple[int, int] | None  # largest input (tile above it); None: no limit recorded
    image_io: str | None = None  # an image model's esc_image_io ("pixels" or "encoded"): it tiles itself


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


def _hw_param(params: dict[str, str], key: str, model: str) -> tuple[int, int] | None:
    if key not in params:
        return None
    try:
        h, w = (int(v) for v in params[key].split(","))
    except ValueError:
        raise ValueError(f"model {model!r}: parameter {key} must be 'H,W', found {params[key]!r}") from None
    return h, w


def parse_model_info(config: dict[str, Any]) -> ModelInfo:
    """Model facts and limits from Triton's model config as JSON (HTTP ``get_model_config``, or
    gRPC's ``get_model_config(as_json=True)["config"]``)."""
    try:
        name = str(config["name"])
        (inp,), (out,) = config["input"], config["output"]
    except (KeyError, ValueError, TypeError):
        raise ValueError(f"expected a model config with one input and one output, got keys {list(config)}") from None
    params = {k: str(v.get("string_value", "")) for k, v in (config.get("parameters") or {}).items()}
    missing = [key for key in (PARAM_SCALE, PARAM_WINDOW, PARAM_MIN_HW) if key not in params]
    if missing:
        raise ValueError(
            f"model {name!r} does not record {', '.join(missing)} in its config: "
            "write its repository with serving/make_triton_repo.py"
        )
    try:
        scale, window = int(params[PARAM_SCALE]), int(params[PARAM_WINDOW])
    except ValueError:
        raise ValueError(f"model {name!r}: {PARAM_SCALE} and {PARAM_WINDOW} must be integers") from None
    min_hw = _hw_param(params, PARAM_MIN_HW, name)
    assert min_hw is not None  # checked above
    return ModelInfo(
        name=name,
        input_name=str(inp["name"]),
        output_name=str(out["name"]),
        max_batch_size=int(config.get("max_batch_size", 0)),
        scale=scale,
        window_size=window,
        min_hw=min_hw,
        max_hw=_hw_param(params, PARAM_MAX_HW, name),
        image_io=params.get("esc_image_io"),
    )


@dataclass(frozen=True)
class TilePlan:
    tile: tuple[int, int]
    overlap: int
    align: int
    tiles_per_call: int
    concurrency: int


def plan_tiles(
    info: ModelInfo,
    image_hw: tuple[int, int],
    *,
    max_tile: int | None = None,
    overlap: int = 32,
    align: int | None = None,
    concurrency: int = 1,
) -> TilePlan:
    """Tile size: ``max_tile``, else the model's maximum input, else the whole image (one call).
    Alignment: ``align``, else the model's window size (tiles share the image's windows).
    Tiles per request: the model's batch shared among ``concurrency`` requests in flight, so that
    dynamic batching can merge them into full batches."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be positive, got {concurrency}")
    if max_tile is not None:
        if max_tile < 1:
            raise ValueError(f"max tile must be positive, got {max_tile}")
        tile = (max_tile, max_tile)
        if info.max_hw is not None and (tile[0] > info.max_hw[0] or tile[1] > info.max_hw[1]):
            raise ValueError(f"max tile {max_tile} exceeds model {info.name!r}'s maximum input {info.max_hw}")
        if min(tile) < max(info.min_hw):
            raise ValueError(f"max tile {max_tile} is below model {info.name!r}'s minimum input {info.min_hw}")
    elif info.max_hw is not None:
        tile = info.max_hw
    else:
        tile = image_hw
    window = align if align is not None else info.window_size
    if window < 1:
        raise ValueError(f"align must be positive, got {window}")
    if window > 1 and min(tile) - overlap < window:
        window = 1  # tiles too small to keep the stride a multiple of the window
    overlap = max(0, min(overlap, min(tile) - 1))
    per_call = max(1, max(info.max_batch_size, 1) // concurrency)
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


def upscale_image(
    image: np.ndarray,
    upscale: Upscale,
    *,
    scale: int,
    plan: TilePlan,
    min_hw: tuple[int, int] = (1, 1),
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Upscale [1, 3, H, W] with ``upscale`` on overlapping tiles (esc.tiling rules), padding
    images and tiles below ``min_hw``."""
    return upscale_tiled(
        image,
        padded(upscale, min_hw, scale),
        scale=scale,
        tile=plan.tile,
        overlap=plan.overlap,
        align=plan.align,
        tiles_per_call=plan.tiles_per_call,
        concurrency=plan.concurrency,
        progress=progress,
    )


class TritonUpscaler:
    """``__call__``: [n, 3, h, w] float32 -> [n, 3, h*s, w*s] through one model on a Triton server.

    Thread-safe: each thread gets its own client connection (tritonclient's HTTP client is not)."""

    def __init__(self, url: str, module: Any, info: ModelInfo, protocol: Protocol, timeout_s: float) -> None:
        self.url, self.module, self.info, self.protocol = url, module, info, protocol
        self.timeout_s = timeout_s
        self._local = threading.local()

    @property
    def client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = _client(self.module, self.url, self.protocol, self.timeout_s)
        return client

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        step = self.info.max_batch_size
        if step > 0 and len(batch) > step:
            return np.concatenate([self(batch[i : i + step]) for i in range(0, len(batch), step)])
        n, c, h, w = batch.shape
        out = self.infer(batch)
        expected = (n, c, h * self.info.scale, w * self.info.scale)
        if out.shape != expected:
            raise TritonError(f"model {self.info.name!r} returned shape {out.shape}, expected {expected}")
        return out

    def upscale_file(self, source: Path, target: Path) -> tuple[int, int]:
        """An image model (``info.image_io``) upscales ``source`` whole; ``target`` is written atomically as
        PNG, nothing at all on an error. The bytes model gets the file as it is (its alpha, gray or 16 bits
        kept by the server); the pixel model gets 8-bit pixels of the file's mode. Returns the input (h, w)."""
        from PIL import Image, UnidentifiedImageError

        from esc_deploy.common.files import atomic_write_bytes
        from esc_deploy.runtime.images import kept_mode

        if target.suffix.lower() != ".png":
            raise ValueError(f"model {self.info.name!r} answers with PNG: name the output .png, not {target.name}")
        try:
            with Image.open(source) as img:
                mode = kept_mode(img.mode, img.has_transparency_data)
                size = (img.height, img.width)
                pixels = None if self.info.image_io == "encoded" else _pixels_8bit(img, mode)
        except (OSError, ValueError, UnidentifiedImageError) as exc:
            raise ValueError(f"cannot read image {source}: {_one_line(exc)}") from None
        if pixels is None:
            png = self.infer(np.frombuffer(source.read_bytes(), dtype=np.uint8), np.uint8).tobytes()
        else:
            out = self.infer(pixels[:, :, None] if pixels.ndim == 2 else pixels, np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(out[:, :, 0] if out.shape[2] == 1 else out).save(buffer, format="PNG")
            png = buffer.getvalue()
        if not png.startswith(b"\x89PNG"):
            raise TritonError(f"model {self.info.name!r} did not answer with a PNG image")
        atomic_write_bytes(target, png)
        return size

    def infer(self, array: np.ndarray, result_type: type[np.generic] = np.float32) -> np.ndarray:
        """One request with ``array`` as it is (any dtype or shape): the server's answer, or TritonError."""
        dtype = self.module.np_to_triton_dtype(array.dtype)
        try:
            inp = self.module.InferInput(self.info.input_name, list(array.shape), dtype)
            inp.set_data_from_numpy(array)
            out = self.module.InferRequestedOutput(self.info.output_name)
            timeout = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
            result = self.client.infer(self.info.name, inputs=[inp], outputs=[out], **timeout)
            data = result.as_numpy(self.info.output_name)
            if data is None:
                raise ValueError(f"no output {self.info.output_name!r} in the response")
            return np.asarray(data, dtype=result_type)
        except Exception as exc:  # tritonclient raises InferenceServerException, transport and decode errors
            raise TritonError(f"inference on model {self.info.name!r} failed: {_one_line(exc)}") from None

    def statistics(self) -> dict[str, int]:
        """The model's ``inference_count`` and ``execution_count`` (fewer executions: batched requests)."""
        stats = self.client.get_inference_statistics(self.info.name)
        if self.protocol == "grpc":
            from google.protobuf.json_format import MessageToDict

            stats = MessageToDict(stats, preserving_proto_field_name=True)
        (model,) = stats["model_stats"]
        return {key: int(model.get(key, 0)) for key in ("inference_count", "execution_count")}

    def close(self) -> None:
        client = getattr(self._local, "client", None)
        if client is not None:
            client.close()
            self._local.client = None


def _pixels_8bit(img: Any, mode: str) -> np.ndarray:
    """A Pillow image as the pixel model takes it: 8-bit samples of ``mode`` (16-bit gray rounded to 8)."""
    if mode == "I;16":
        return np.clip(np.rint(np.asarray(img, dtype=np.float64) / 257.0), 0, 255).astype(np.uint8)
    return np.asarray(img.convert(mode))


def _client(module: Any, url: str, protocol: Protocol, timeout_s: float) -> Any:
    if protocol == "http":  # the HTTP client's own default gives up on a request after 60 s
        return module.InferenceServerClient(url=url, connection_timeout=timeout_s, network_timeout=timeout_s)
    return module.InferenceServerClient(url=url)  # gRPC: per call (client_timeout)


def connect(url: str, model: str, protocol: Protocol, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> TritonUpscaler:
    """A client for ``model`` on the server at ``url`` (``HOST:PORT``), checked to be ready; each
    request may take up to ``timeout_s`` (queueing included: CPU inference of large tiles is slow)."""
    if protocol == "http":
        import tritonclient.http as module
    elif protocol == "grpc":
        import tritonclient.grpc as module
    else:
        raise ValueError(f"protocol must be 'http' or 'grpc', got {protocol!r}")
    try:
        client = _client(module, url, protocol, timeout_s)
        if not client.is_server_live():
            raise TritonError(f"model {model!r}: Triton server at {url} is not live")
        if not client.is_model_ready(model):
            raise TritonError(f"model {model!r} is not ready on {url} (is it in the repository and loaded?)")
        if protocol == "grpc":
            config = client.get_model_config(model, as_json=True)["config"]
        else:
            config = client.get_model_config(model)
        client.close()
    except TritonError:
        raise
    except Exception as exc:  # connection refused, DNS, timeouts: tritonclient wraps them differently
        raise TritonError(f"model {model!r}: cannot talk to Triton at {url} ({protocol}): {_one_line(exc)}") from None
    return TritonUpscaler(url, module, parse_model_info(config), protocol, timeout_s)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
