"""The client's whole-image mode: an image model (serving/model_repository/image_model.py) tiles in the server.

The bytes model gets the file as it is (its alpha, gray or 16 bits kept by the server); the pixel model
gets 8-bit pixels of the file's mode. The PNG answer is written atomically: nothing at all on an error.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from esc_deploy.runtime.triton import TritonError, TritonRunner

IMAGE_IO_PARAMETER = "esc_image_io"  # written by serving/model_repository/writer.py: "pixels" or "encoded"


def image_io(runner: TritonRunner) -> str | None:
    """The model's ``esc_image_io`` (an image model), or None (a tensor model: the client tiles)."""
    try:
        if runner.protocol == "grpc":
            config = runner.client.get_model_config(runner.name, as_json=True)["config"]
        else:
            config = runner.client.get_model_config(runner.name)
    except Exception as exc:  # tritonclient's transport errors
        raise TritonError(f"model {runner.name!r}: cannot read its config: {' '.join(str(exc).split())}") from None
    value = ((config.get("parameters") or {}).get(IMAGE_IO_PARAMETER) or {}).get("string_value")
    return str(value) if value else None


def upscale_file(runner: TritonRunner, io_kind: str, source: Path, target: Path) -> tuple[int, int]:
    """``source`` upscaled whole by the image model into the PNG ``target``; returns the input (h, w)."""
    from PIL import Image, UnidentifiedImageError

    from esc_deploy.common.files import atomic_write_bytes
    from esc_deploy.runtime.images import kept_mode

    if target.suffix.lower() != ".png":
        raise ValueError(f"model {runner.name!r} answers with PNG: name the output .png, not {target.name}")
    try:
        with Image.open(source) as img:
            mode = kept_mode(img.mode, img.has_transparency_data)
            size = (img.height, img.width)
            pixels = None if io_kind == "encoded" else _pixels_8bit(img, mode)
    except (OSError, ValueError, UnidentifiedImageError) as exc:
        raise ValueError(f"cannot read image {source}: {' '.join(str(exc).split())}") from None
    if pixels is None:
        png = _infer(runner, np.frombuffer(source.read_bytes(), dtype=np.uint8)).tobytes()
    else:
        out = _infer(runner, pixels[:, :, None] if pixels.ndim == 2 else pixels)
        buffer = io.BytesIO()
        Image.fromarray(out[:, :, 0] if out.shape[2] == 1 else out).save(buffer, format="PNG")
        png = buffer.getvalue()
    if not png.startswith(b"\x89PNG"):
        raise TritonError(f"model {runner.name!r} did not answer with a PNG image")
    atomic_write_bytes(target, png)
    return size


def _pixels_8bit(img: Any, mode: str) -> np.ndarray:
    """A Pillow image as the pixel model takes it: 8-bit samples of ``mode`` (16-bit gray rounded to 8)."""
    if mode == "I;16":
        return np.clip(np.rint(np.asarray(img, dtype=np.float64) / 257.0), 0, 255).astype(np.uint8)
    return np.asarray(img.convert(mode))


def _infer(runner: TritonRunner, array: np.ndarray) -> np.ndarray:
    """One UINT8 request to the image model (the runner's own ``infer`` is for float32 tiles)."""
    module = runner.module
    try:
        inp = module.InferInput(runner.input_name, list(array.shape), "UINT8")
        inp.set_data_from_numpy(np.ascontiguousarray(array))
        timeout = {"client_timeout": runner.timeout_s} if runner.protocol == "grpc" else {}
        result = runner.client.infer(runner.name, inputs=[inp], **timeout)
        data = result.as_numpy(runner.output_name)
        if data is None:
            raise ValueError(f"no output {runner.output_name!r} in the response")
        return np.asarray(data, dtype=np.uint8)
    except Exception as exc:  # tritonclient raises InferenceServerException, transport and decode errors
        raise TritonError(f"inference on model {runner.name!r} failed: {' '.join(str(exc).split())}") from None
