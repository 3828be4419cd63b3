"""Triton Python-backend model (BLS): send an image, get the image upscaled; no tiling in the client.

serving/model_repository/writer.py copies this file to ``<repo>/<name>_image/1/model.py`` (pixels in and out)
and to ``<repo>/<name>_image_bytes/1/model.py`` (an encoded file in, a PNG out). It imports the tile plan
and the image rule from ``esc_deploy.runtime``, exactly what ``esc-deploy upscale`` runs, so the server's
Python needs this package (``pip install esc-deploy[serve]``; the local server runs this interpreter).

Inputs and outputs (``esc_image_io`` in the config says which):

* ``pixels``: ``IMAGE`` UINT8 [H, W, C], C = 1 (gray), 2 (gray, alpha), 3 (RGB) or 4 (RGBA); out ``IMAGE``
  UINT8 [H*s, W*s, C].
* ``encoded``: ``IMAGE`` UINT8 [N], the bytes of a PNG/JPEG/... file (anything Pillow opens; modes as
  esc_deploy.runtime.images reads them, 16-bit gray kept); out ``IMAGE`` UINT8 [M], the bytes of a PNG of
  the same mode. UINT8, not TYPE_STRING: a BYTES element carries a 4-byte length prefix on the wire, so a
  file could not be sent as it is (``curl --data-binary @photo.jpg``), and tritonserver 2.51's stub
  crashes decoding BYTES inputs under numpy 2.

The work (esc_deploy.runtime): colour and alpha planes (``Picture.planes``) go through the network
together; the tile plan (``plan_tiles``) takes the tensor model's facts (its largest input is the tile,
tiles start on the window grid, ``esc_tile_overlap`` apart) and ``upscale_array`` pads, tiles and feathers
(esc/tiling.py); ``Picture.with_planes`` and ``to_pil`` give gray, alpha and 8 (or 16) bits back. The
tiles go by BLS to the tensor model ``esc_tensor_model`` of the same repository, up to its
``max_batch_size`` per request, so that its dynamic batching merges the tiles of concurrent images.
Images above ``esc_max_pixels`` (H*W) are refused with one line, as is anything malformed.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from esc_deploy.runtime.facts import ModelFacts
from esc_deploy.runtime.images import Picture, decode, encode_image, to_pil
from esc_deploy.runtime.tiles import TilePlan, plan_tiles, upscale_array
from esc_deploy.serving.model_repository.python_model import to_triton  # numpy 2 / DLPack with the 2.51 stub

IMAGE = "IMAGE"
MODE_OF_CHANNELS = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


class RequestError(ValueError):
    """What is wrong with one request: its error response, one line."""


def picture_of(pixels: np.ndarray, mode: str) -> Picture:
    """8-bit [H, W, C] pixels of ``mode`` as esc_deploy.runtime.images.read_image decodes them."""
    channels = pixels.astype(np.float32).transpose(2, 0, 1) / 255.0  # (C, H, W)
    has_alpha = mode in ("RGBA", "LA")
    colour = channels[:-1] if has_alpha else channels
    if colour.shape[0] == 1:
        colour = np.repeat(colour, 3, axis=0)
    alpha = np.ascontiguousarray(channels[-1:][None]) if has_alpha else None
    return Picture(np.ascontiguousarray(colour[None], dtype=np.float32), alpha, mode)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.name = str(config["name"])
        params = {k: v["string_value"] for k, v in (config.get("parameters") or {}).items()}
        self.io = params["esc_image_io"]
        self.max_pixels = int(params["esc_max_pixels"])
        self.overlap = int(params["esc_tile_overlap"])
        self.tensor_model = params["esc_tensor_model"]
        self.tensor_input, self.tensor_output = params["esc_tensor_input"], params["esc_tensor_output"]
        tensor_config = {  # the tensor model's facts, which the writer copied into this model's parameters
            "name": self.tensor_model,
            "max_batch_size": int(params["esc_tensor_max_batch"]),
            "parameters": config.get("parameters") or {},
        }
        self.facts = ModelFacts.from_triton_config(tensor_config)
        self.per_call = max(1, self.facts.max_batch)

    def plan(self, image_hw: tuple[int, int]) -> TilePlan:
        """The tile plan of ``esc-deploy upscale`` for the tensor model: its largest input, its window grid."""
        return plan_tiles(self.facts, image_hw, overlap=self.overlap)

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                data = np.from_dlpack(pb_utils.get_input_tensor_by_name(request, IMAGE))
                picture = self._decode(data) if self.io == "encoded" else self._picture(data)
                planes = upscale_array(
                    picture.planes(), self._infer, scale=self.facts.scale, plan=self.plan(picture.size),
                    min_hw=self.facts.min_hw,
                )  # fmt: skip
                result = picture.with_planes(planes)
                out = self._encode(result) if self.io == "encoded" else self._pixels(to_pil(result))
                responses.append(pb_utils.InferenceResponse(output_tensors=[to_triton(IMAGE, out)]))
            except RequestError as exc:
                responses.append(self._error(str(exc)))
            except Exception as exc:  # anything else still answers this request alone, in one line
                responses.append(self._error(f"{type(exc).__name__}: {' '.join(str(exc).split())}"))
        return responses

    def _picture(self, pixels: np.ndarray) -> Picture:
        shape = "x".join(map(str, pixels.shape))
        if pixels.ndim != 3 or pixels.shape[2] not in MODE_OF_CHANNELS:
            raise RequestError(f"expected {IMAGE} of shape [height, width, channels] with 1 to 4 channels, got {shape}")
        if pixels.dtype != np.uint8:
            raise RequestError(f"expected {IMAGE} of type UINT8, got {pixels.dtype}")
        h, w = pixels.shape[:2]
        if h < 1 or w < 1:
            raise RequestError(f"empty image {shape}")
        self._check_size(w, h)
        return picture_of(pixels, MODE_OF_CHANNELS[pixels.shape[2]])

    def _check_size(self, w: int, h: int) -> None:
        if h * w > self.max_pixels:
            limit = f"the limit of {self.max_pixels} (esc_max_pixels)"
            raise RequestError(f"image {w}x{h} has {h * w} pixels, above {limit}")

    def _decode(self, data: np.ndarray) -> Picture:
        """A file's bytes decoded as ``esc-deploy upscale`` decodes a file (esc_deploy.runtime.images.decode)."""
        from PIL import Image

        if data.ndim != 1 or data.dtype != np.uint8:
            got = f"{data.dtype} {list(data.shape)}"
            raise RequestError(f"expected {IMAGE} as the bytes of an image file (UINT8 [N]), got {got}")
        try:
            with Image.open(io.BytesIO(data.tobytes())) as img:
                self._check_size(*img.size)  # from the header, before decoding a bomb
                return decode(img)
        except RequestError:
            raise
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise RequestError(f"cannot decode the image file: {' '.join(str(exc).split())}") from None

    @staticmethod
    def _pixels(image: Any) -> np.ndarray:
        pixels = np.asarray(image)
        return pixels[:, :, None] if pixels.ndim == 2 else pixels

    @staticmethod
    def _encode(picture: Picture) -> np.ndarray:
        """PNG, as ``esc-deploy upscale out.png`` writes it (16-bit gray, ICC profile and EXIF kept)."""
        return np.frombuffer(encode_image(picture, ".png"), dtype=np.uint8)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """The tensor model by BLS, one request per ``max_batch_size`` tiles."""
        outputs = []
        for start in range(0, len(batch), self.per_call):
            part = np.ascontiguousarray(batch[start : start + self.per_call], dtype=np.float32)
            request = pb_utils.InferenceRequest(
                model_name=self.tensor_model,
                inputs=[to_triton(self.tensor_input, part)],
                requested_output_names=[self.tensor_output],
                # on the host: a TensorRT model answers in GPU memory, which np.from_dlpack cannot read
                preferred_memory=pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0),
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
