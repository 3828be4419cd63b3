"""Triton Python-backend model (BLS): send an image, get the image upscaled; no tiling in the client.

serving/model_repository/writer.py copies this file to ``<repo>/<name>_image/1/model.py`` (pixels in and out)
and to ``<repo>/<name>_image_bytes/1/model.py`` (an encoded file in, a PNG out), with ``esc/tiling.py`` beside
it as ``esc_tiling.py``: it runs inside Triton's Python stub and imports nothing else of this project.

Inputs and outputs (``esc_image_io`` in the config says which):

* ``pixels``: ``IMAGE`` UINT8 [H, W, C], C = 1 (gray), 2 (gray, alpha), 3 (RGB) or 4 (RGBA); out ``IMAGE``
  UINT8 [H*s, W*s, C].
* ``encoded``: ``IMAGE`` UINT8 [N], the bytes of a PNG/JPEG/... file (anything Pillow opens; 16-bit files
  are read as 8-bit); out ``IMAGE`` UINT8 [M], the bytes of a PNG of the same mode. UINT8, not
  TYPE_STRING: a BYTES element carries a 4-byte length prefix on the wire, so a file could not be sent as
  it is (``curl --data-binary @photo.jpg``), and tritonserver 2.51's stub crashes decoding BYTES inputs
  under numpy 2.

The work, the same as ``esc-deploy upscale`` on the same input: the colour planes (gray in all three
channels) and the alpha plane as a gray image go through the network together (a batch of 1 or 2);
tiles of the tensor model's largest input, ``esc_tile_overlap`` apart, starting on the window grid,
feathered where they overlap (esc/tiling.py); tiles below the model's smallest input are reflect-padded and
the output cropped; gray output and alpha are the mean of the three output channels; 8 bits by rounding to
nearest. The tiles go by BLS to the tensor model ``esc_tensor_model`` of the same repository, up to its
``max_batch_size`` per request, so that its dynamic batching merges the tiles of concurrent images.
Images above ``esc_max_pixels`` (H*W) are refused with one line, as is anything malformed.
"""

from __future__ import annotations

import ctypes
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, str(Path(__file__).parent))
import esc_tiling

IMAGE = "IMAGE"
CHANNELS = (1, 2, 3, 4)
_CONSUMED = b"used_dlpack"  # the stub's name for a capsule it took over (python_model.py explains)
_capsule_name = ctypes.pythonapi.PyCapsule_GetName
_capsule_name.argtypes, _capsule_name.restype = [ctypes.py_object], ctypes.c_char_p
_set_destructor = ctypes.pythonapi.PyCapsule_SetDestructor
_set_destructor.argtypes, _set_destructor.restype = [ctypes.py_object, ctypes.c_void_p], ctypes.c_int


class RequestError(ValueError):
    """What is wrong with one request: its error response, one line."""


def to_triton(name: str, array: np.ndarray) -> Any:
    """``array`` as a stub tensor, by DLPack (numpy 2 and the 2.51 stub: see python_model.py)."""
    contiguous = np.ascontiguousarray(array)
    if not contiguous.flags.writeable:  # DLPack 0.8, the stub's, cannot say read-only
        contiguous = contiguous.copy()
    capsule = contiguous.__dlpack__()
    tensor = pb_utils.Tensor.from_dlpack(name, capsule)
    if _capsule_name(capsule) == _CONSUMED:
        _set_destructor(capsule, None)
    return tensor


def _hw(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.split(","))
    return h, w


def to_planes(pixels: np.ndarray) -> np.ndarray:
    """[H, W, C] uint8 -> [1 or 2, 3, H, W] float32 in [0, 1]: the colour, then the alpha as a gray image."""
    channels = pixels.shape[2]
    scaled = pixels.astype(np.float32).transpose(2, 0, 1) / np.float32(255.0)  # (C, H, W)
    colour = scaled[:3] if channels >= 3 else np.repeat(scaled[:1], 3, axis=0)
    planes = [colour]
    if channels in (2, 4):
        planes.append(np.repeat(scaled[-1:], 3, axis=0))
    return np.ascontiguousarray(np.stack(planes))


def from_planes(planes: np.ndarray, channels: int) -> np.ndarray:
    """Upscaled [1 or 2, 3, h, w] -> [h, w, C] uint8 (gray and alpha: the mean of the three channels)."""
    colour = planes[0] if channels >= 3 else planes[0].mean(axis=0, keepdims=True)
    parts = [colour] + ([planes[1].mean(axis=0, keepdims=True)] if channels in (2, 4) else [])
    stacked = np.concatenate(parts).transpose(1, 2, 0)  # (h, w, C)
    return np.clip(np.rint(stacked * 255.0), 0, 255).astype(np.uint8)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.name = str(config["name"])
        params = {k: v["string_value"] for k, v in (config.get("parameters") or {}).items()}
        self.io = params["esc_image_io"]
        self.scale = int(params["esc_scale"])
        self.window = int(params["esc_window_size"])
        self.max_pixels = int(params["esc_max_pixels"])
        self.tensor_model = params["esc_tensor_model"]
        self.tensor_input, self.tensor_output = params["esc_tensor_input"], params["esc_tensor_output"]
        self.per_call = max(1, int(params["esc_tensor_max_batch"]))
        self.min_hw = _hw(params["esc_min_input_hw"])
        self.tile = _hw(params["esc_max_input_hw"])
        overlap = int(params["esc_tile_overlap"])
        self.overlap = max(0, min(overlap, min(self.tile) - 1))
        self.align = self.window if min(self.tile) - self.overlap >= self.window else 1

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                data = np.from_dlpack(pb_utils.get_input_tensor_by_name(request, IMAGE))
                pixels = self._decode(data) if self.io == "encoded" else self._checked(data)
                result = from_planes(self._upscale(to_planes(pixels)), pixels.shape[2])
                out = self._encode(result) if self.io == "encoded" else result
                responses.append(pb_utils.InferenceResponse(output_tensors=[to_triton(IMAGE, out)]))
            except RequestError as exc:
                responses.append(self._error(str(exc)))
            except Exception as exc:  # anything else still answers this request alone, in one line
                responses.append(self._error(f"{type(exc).__name__}: {' '.join(str(exc).split())}"))
        return responses

    def _checked(self, pixels: np.ndarray) -> np.ndarray:
        shape = "x".join(map(str, pixels.shape))
        if pixels.ndim != 3 or pixels.shape[2] not in CHANNELS:
            raise RequestError(f"expected {IMAGE} of shape [height, width, channels] with 1 to 4 channels, got {shape}")
        if pixels.dtype != np.uint8:
            raise RequestError(f"expected {IMAGE} of type UINT8, got {pixels.dtype}")
        h, w = pixels.shape[:2]
        if h < 1 or w < 1:
            raise RequestError(f"empty image {shape}")
        self._check_size(w, h)
        return pixels

    def _check_size(self, w: int, h: int) -> None:
        if h * w > self.max_pixels:
            limit = f"the limit of {self.max_pixels} (esc_max_pixels)"
            raise RequestError(f"image {w}x{h} has {h * w} pixels, above {limit}")

    def _decode(self, data: np.ndarray) -> np.ndarray:
        from PIL import Image

        if data.ndim != 1 or data.dtype != np.uint8:
            got = f"{data.dtype} {list(data.shape)}"
            raise RequestError(f"expected {IMAGE} as the bytes of an image file (UINT8 [N]), got {got}")
        try:
            with Image.open(io.BytesIO(data.tobytes())) as img:
                self._check_size(*img.size)  # from the header, before decoding a bomb
                if img.mode.startswith("I"):  # 16-bit gray, served in 8 bits
                    wide = np.asarray(img, dtype=np.float64)
                    pixels = np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)
                else:
                    mode = "RGBA" if img.has_transparency_data and img.mode not in ("L", "LA") else img.mode
                    target = {"1": "L", "L": "L", "LA": "LA", "RGBA": "RGBA"}.get(mode, "RGB")
                    pixels = np.asarray(img.convert(target))
        except RequestError:
            raise
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise RequestError(f"cannot decode the image file: {' '.join(str(exc).split())}") from None
        return pixels[:, :, None] if pixels.ndim == 2 else pixels

    @staticmethod
    def _encode(pixels: np.ndarray) -> np.ndarray:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(buffer, format="PNG")
        return np.frombuffer(buffer.getvalue(), dtype=np.uint8)

    def _upscale(self, planes: np.ndarray) -> np.ndarray:
        return esc_tiling.upscale_tiled(
            planes,
            self._padded,
            scale=self.scale,
            tile=self.tile,
            overlap=self.overlap,
            align=self.align,
            tiles_per_call=max(1, self.per_call // len(planes)),
        )

    def _padded(self, batch: np.ndarray) -> np.ndarray:
        """The tensor model on tiles of any size: reflect-padded below its minimum, the output cropped."""
        h, w = batch.shape[2:]
        pad_h, pad_w = max(0, self.min_hw[0] - h), max(0, self.min_hw[1] - w)
        if pad_h or pad_w:
            big = np.pad(batch, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="reflect")
            return np.ascontiguousarray(self._infer(big)[:, :, : h * self.scale, : w * self.scale])
        return self._infer(batch)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """One BLS request per ``max_batch_size`` tiles to the tensor model."""
        outputs = []
        for start in range(0, len(batch), self.per_call):
            part = np.ascontiguousarray(batch[start : start + self.per_call], dtype=np.float32)
            request = pb_utils.InferenceRequest(
                model_name=self.tensor_model,
                inputs=[to_triton(self.tensor_input, part)],
                requested_output_names=[self.tensor_output],
            )
            response = request.exec()
            if response.has_error():
                raise RequestError(f"tensor model {self.tensor_model!r}: {response.error().message()}")
            tensor = pb_utils.get_output_tensor_by_name(response, self.tensor_output)
            outputs.append(np.from_dlpack(tensor).copy())  # copied: the response's memory goes with it
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    def _error(self, message: str) -> Any:
        return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(f"{self.name}: {message}"))

    def finalize(self) -> None:
        pass
