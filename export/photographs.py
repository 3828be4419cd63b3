"""Real photographs as low-resolution model inputs: scikit-image's bundled images or a folder of PNG/JPEG.

A super-resolution model sees low-resolution images, so each photograph is shrunk by the model's scale
(bicubic, as the SR benchmarks make their LR inputs), and optionally until its longer side is at most
``max_side``. Used by the fp16 calibration (export) and by parity and benchmarks (validation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Bundled with scikit-image (no download). brick, grass and gravel are grayscale: repeated to RGB.
DEFAULT_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "brick", "grass", "gravel")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class InputImage:
    """One model input: ``pixels`` is (1, 3, H, W) float32 in [0, 1]."""

    name: str
    pixels: np.ndarray
    source_size: tuple[int, int]  # (H, W) of the photograph before shrinking

    @property
    def size(self) -> tuple[int, int]:
        return int(self.pixels.shape[-2]), int(self.pixels.shape[-1])


def low_res_size(height: int, width: int, *, scale: int, max_side: int | None, min_side: int) -> tuple[int, int]:
    """(H, W) of the LR input: the photograph divided by ``scale``, then capped at ``max_side``."""
    h, w = height / scale, width / scale
    if max_side is not None and max(h, w) > max_side:
        shrink = max_side / max(h, w)
        h, w = h * shrink, w * shrink
    out = max(round(h), 1), max(round(w), 1)
    if min(out) < min_side:
        raise ValueError(
            f"a {height}x{width} photograph gives a {out[0]}x{out[1]} input at scale {scale}; the model needs "
            f"sides >= {min_side} (allow a larger side or use larger images)"
        )
    return out


def to_low_res(rgb: np.ndarray, name: str, *, scale: int, max_side: int | None, min_side: int) -> InputImage:
    """An 8-bit (H, W, 3) or (H, W) photograph -> its LR input (bicubic)."""
    from PIL import Image

    if rgb.dtype != np.uint8:
        raise ValueError(f"{name}: expected 8-bit pixels, found {rgb.dtype}")
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        raise ValueError(f"{name}: expected an (H, W, 3) RGB image, found shape {rgb.shape}")
    rgb = rgb[..., :3]
    height, width = rgb.shape[:2]
    h, w = low_res_size(height, width, scale=scale, max_side=max_side, min_side=min_side)
    small = Image.fromarray(np.ascontiguousarray(rgb)).resize((w, h), Image.Resampling.BICUBIC)
    pixels = (np.asarray(small, dtype=np.float32) / 255.0).transpose(2, 0, 1)[None].copy()  # (1, 3, h, w)
    return InputImage(name=name, pixels=pixels, source_size=(height, width))


def skimage_photographs(names: tuple[str, ...] = DEFAULT_IMAGES) -> list[tuple[str, np.ndarray]]:
    from skimage import data

    out = []
    for name in names:
        loader: Any = getattr(data, name, None)
        if loader is None:
            raise ValueError(f"scikit-image has no bundled image {name!r}")
        out.append((name, np.asarray(loader())))
    return out


def folder_photographs(folder: Path) -> list[tuple[str, np.ndarray]]:
    """Every PNG/JPEG directly in ``folder``, sorted by name, as 8-bit RGB."""
    from PIL import Image, UnidentifiedImageError

    if not folder.is_dir():
        raise ValueError(f"{folder} is not a directory")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"no {'/'.join(IMAGE_SUFFIXES)} files in {folder}")
    out = []
    for path in files:
        try:
            with Image.open(path) as image:
                out.append((path.stem, np.asarray(image.convert("RGB"))))
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"cannot read {path}: {exc}") from None
    return out
