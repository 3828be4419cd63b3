"""The parity inputs: real photographs (export/photographs.py), shrunk to keep CPU runs short.

The default cap on the longer side, 100, is a multiple of neither 8 nor 32, so the default inputs
exercise the reflect padding of windows that do not tile the image.
"""

from __future__ import annotations

from pathlib import Path

from esc_deploy.export.photographs import (
    DEFAULT_IMAGES,
    IMAGE_SUFFIXES,
    InputImage,
    folder_photographs,
    low_res_size,
    skimage_photographs,
    to_low_res,
)

__all__ = ["DEFAULT_IMAGES", "DEFAULT_MAX_SIDE", "IMAGE_SUFFIXES", "InputImage", "load_inputs", "low_res_size"]
DEFAULT_MAX_SIDE = 100


def load_inputs(
    *, scale: int, min_side: int, folder: Path | None = None, max_side: int | None = DEFAULT_MAX_SIDE
) -> list[InputImage]:
    """The parity inputs: ``folder``'s photographs, or scikit-image's by default."""
    photos = folder_photographs(folder) if folder is not None else skimage_photographs()
    return [to_low_res(rgb, name, scale=scale, max_side=max_side, min_side=min_side) for name, rgb in photos]
