"""The calibration inputs of the fp16 rule: small photographs, and one larger input, all of fixed sizes.

The set is a pure function of the model's configuration and the options (never of the machine), so
two builds of the same file calibrate on the same pixels, write the same fp16 file and find it again
in the cache. ESC's dynamic kernels come from a global average pool, so activations depend on the
image size as well as its content: the set holds each photograph at the input scale of the model
(the photograph divided by its scale), its longest side capped at ``PHOTO_WINDOWS`` windows, and
the first one resized towards the largest shape the engines will run (the default profile's
maximum, 1080x1920), shrunk to a fixed memory budget: ONNX Runtime's window attention holds
``heads x window^2`` scores per pixel, about 50 KB per pixel for ESC-light, so 1080x1920 would need
about 100 GiB. Calibration time grows with the pixels: on a 2-core CPU ESC-light runs a 128x128
input in about 10 s, a 64x64 one in 2 s, which is why the photographs are capped. The shapes used
are recorded in the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from esc.config import ESCConfig
from esc_deploy.export.photographs import InputImage, folder_photographs, skimage_photographs, to_low_res

DEFAULT_CALIBRATION_IMAGES = ("astronaut", "coffee", "chelsea", "rocket")
DEFAULT_LARGE_SHAPE = (1080, 1920)  # the default engine profile's maximum (H, W)
PHOTO_WINDOWS = 2  # photographs' longest side, in windows (64 px for ESC-light): whole windows, seconds per input
LARGE_INPUT_BYTES = 512 << 20  # ONNX Runtime's peak for the large input; fixed, so the set never depends on the machine


def bytes_per_pixel(config: ESCConfig) -> int:
    """ONNX Runtime's peak per input pixel: scores, biased scores and softmax of every window, float32."""
    return config.num_heads * config.window_size**2 * 4 * 3 + config.dim * 4 * 16


def fitted_shape(target: tuple[int, int], config: ESCConfig, memory: int) -> tuple[int, int]:
    """``target`` (H, W) shrunk uniformly until one run fits ``memory`` bytes; at least the minimum side."""
    h, w = target
    pixels = max(1, memory // bytes_per_pixel(config))
    shrink = min(1.0, math.sqrt(pixels / (h * w)))
    return max(config.min_side, int(h * shrink)), max(config.min_side, int(w * shrink))


@dataclass(frozen=True)
class CalibrationSet:
    inputs: tuple[InputImage, ...]
    source: str
    large_shape: tuple[int, int]
    large_target: tuple[int, int]

    def arrays(self) -> list[np.ndarray]:
        return [image.pixels for image in self.inputs]

    def describe(self) -> dict[str, Any]:
        note = "" if self.large_shape == self.large_target else (
            f"large input shrunk from {self.large_target[0]}x{self.large_target[1]} to fit "
            f"{LARGE_INPUT_BYTES >> 20} MiB of ONNX Runtime memory"
        )  # fmt: skip
        return {
            "source": self.source,
            "inputs": [f"{i.name} {i.size[0]}x{i.size[1]}" for i in self.inputs],
            "large_shape": list(self.large_shape),
            "note": note,
        }


def _resized(image: InputImage, shape: tuple[int, int]) -> InputImage:
    from PIL import Image

    rgb = (image.pixels[0].transpose(1, 2, 0) * 255.0).round().astype(np.uint8)
    big = Image.fromarray(rgb).resize((shape[1], shape[0]), Image.Resampling.BICUBIC)
    pixels = (np.asarray(big, dtype=np.float32) / 255.0).transpose(2, 0, 1)[None].copy()
    return InputImage(name=f"{image.name}@{shape[0]}x{shape[1]}", pixels=pixels, source_size=image.source_size)


def calibration_set(
    config: ESCConfig,
    folder: Path | None = None,
    *,
    large_shape: tuple[int, int] = DEFAULT_LARGE_SHAPE,
    memory: int = LARGE_INPUT_BYTES,
) -> CalibrationSet:
    """The calibration inputs for ``config``: ``folder``'s photographs (None: scikit-image's bundled ones).

    Every size is fixed by ``config``, ``large_shape`` and ``memory``: the same arguments, the same pixels.

    ValueError, one line, for a folder without images, an unreadable image, or an image that is
    smaller than the model's minimum side at its input scale.
    """
    photos = folder_photographs(folder) if folder is not None else skimage_photographs(DEFAULT_CALIBRATION_IMAGES)
    scale, min_side = config.scale, config.min_side
    cap = PHOTO_WINDOWS * config.window_size
    inputs = [to_low_res(rgb, name, scale=scale, max_side=cap, min_side=min_side) for name, rgb in photos]
    shape = fitted_shape(large_shape, config, memory)
    largest = max(inputs, key=lambda i: i.size[0] * i.size[1])
    if shape[0] * shape[1] > largest.size[0] * largest.size[1]:
        name, rgb = photos[0]  # resized from the uncapped input, not from its capped copy
        inputs.append(_resized(to_low_res(rgb, name, scale=scale, max_side=None, min_side=min_side), shape))
    source = str(folder) if folder is not None else "scikit-image: " + ", ".join(DEFAULT_CALIBRATION_IMAGES)
    return CalibrationSet(tuple(inputs), source, shape, tuple(large_shape))  # type: ignore[arg-type]


AUTO = "auto"
OFF = "off"


def check_calibration_choice(choice: str) -> str:
    """'auto', 'off', or a folder of photographs; ValueError (one line) for a folder that is not one."""
    if choice in (AUTO, OFF):
        return choice
    if not Path(choice).is_dir():
        raise ValueError(f"calibration: expected 'auto', 'off' or a folder of PNG/JPEG photographs, found {choice!r}")
    return choice


def calibration_for(
    choice: str, config: ESCConfig, *, large_shape: tuple[int, int] = DEFAULT_LARGE_SHAPE
) -> CalibrationSet | None:
    """The set ``choice`` names: None for 'off' (the fp16 conversion then goes by op type alone)."""
    choice = check_calibration_choice(choice)
    if choice == OFF:
        return None
    return calibration_set(config, None if choice == AUTO else Path(choice), large_shape=large_shape)
