"""Image files in and out with Pillow, keeping what the file holds: alpha, grayscale and 16 bits per sample.

Reading (any format Pillow opens; ``probe`` reads the header only, ``read_image`` decodes):

==================================  ==============  =====================================================
file                                mode kept       what the model sees
==================================  ==============  =====================================================
RGB, CMYK, YCbCr, palette           ``RGB``         the colour planes (CMYK by Pillow's plain conversion)
RGBA, palette with transparency     ``RGBA``        colour, and the alpha plane as a second image
L, 1-bit                            ``L``           the gray plane in all three channels
LA                                  ``LA``          gray, and alpha as a second image
16-bit gray (I;16 PNG/TIFF)         ``I;16``        gray / 65535 in all three channels
==================================  ==============  =====================================================

The alpha rule: alpha is upscaled by the same model as the colour, as a gray image (the plane in all three
channels, in the same tile calls), and the mean of the three output channels is the new alpha. Gray images
come back as the mean of the three output channels too. Pillow has no 16-bit RGB: such files open as 8-bit
and are refused, as are 32-bit integer or float pixels and animations (``_would_lose``).

Kept besides the pixels: the ICC profile (not a CMYK file's, which would misdescribe the RGB output: its
colours are Pillow's plain conversion) and the EXIF block. An EXIF orientation is applied on reading (the
pixels are turned upright, and the tag removed from the EXIF that is written back), so that the output
shows the same way in every viewer.

Writing goes by the output's suffix (``WRITE_FORMATS``): PNG and TIFF hold every mode above; JPEG holds
RGB and L (``quality``); WebP (lossless, colours under transparent pixels kept) holds RGB and RGBA and
stores gray as RGB. ``cannot_hold`` says which pairs lose data (alpha in JPEG, 16 bits in JPEG or WebP)
so that a command refuses them up front. Every file is written atomically (esc_deploy.common.files):
a reader, or an interrupted run, never sees half a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from esc_deploy.common.files import atomic_write_bytes

if TYPE_CHECKING:
    from PIL import Image

WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
MODES = ("RGB", "RGBA", "L", "LA", "I;16")
DEFAULT_QUALITY = 95
_ORIENTATION = 0x0112  # the EXIF tag
_HOLDS = {
    "PNG": set(MODES),
    "TIFF": set(MODES),
    "JPEG": {"RGB", "L"},
    "WEBP": {"RGB", "RGBA", "L", "LA"},  # gray is stored as RGB(A): the pixels are kept, the mode is not
}


def readable_suffixes() -> set[str]:
    """Every suffix Pillow opens (lower case, with the dot)."""
    from PIL import Image

    return {s.lower() for s in Image.registered_extensions()}


def kept_mode(pil_mode: str, has_transparency: bool = False) -> str:
    """The mode (of ``MODES``) a Pillow image of ``pil_mode`` is read into and written back as; a transparent
    colour key (PNG tRNS on RGB, L or P) becomes alpha."""
    if pil_mode in ("RGBA", "RGBa", "PA") or (pil_mode in ("P", "RGB") and has_transparency):
        return "RGBA"
    if pil_mode in ("LA", "La") or (pil_mode == "L" and has_transparency):
        return "LA"
    if pil_mode in ("L", "1"):
        return "L"
    if pil_mode == "I" or pil_mode.startswith("I;16"):
        return "I;16"
    return "RGB"


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says, without decoding its pixels."""

    path: Path
    format: str
    mode: str  # of MODES: what it is read as and written back as
    size: tuple[int, int]  # (height, width)


def _would_lose(img: Any) -> str | None:
    """Why upscaling this opened image would silently lose what the file holds, or None."""
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        return f"it holds {frames} frames (an animation or pages); only single images are upscaled"
    if img.mode == "F":
        return "its pixels are 32-bit floats, which are not kept"
    rawmodes = [t.args if isinstance(t.args, str) else (t.args or ("",))[0] for t in (img.tile or [])]
    if img.mode == "I" and not any(isinstance(r, str) and ";16" in r for r in rawmodes):
        return "its pixels are 32-bit integers, which are not kept (only 16-bit gray is)"
    if img.mode != "I;16" and any(isinstance(r, str) and ";16" in r for r in rawmodes):
        return f"its {img.mode} pixels have 16 bits, which Pillow reads as 8: only 16-bit gray is kept"
    return None


def _mode_kept_of(img: Any) -> str:
    """The mode an opened image is read and written as; ValueError where reading it would lose data."""
    lost = _would_lose(img)
    if lost is not None:
        raise ValueError(lost)
    return kept_mode(img.mode, img.has_transparency_data)


def probe(path: Path) -> ImageHeader:
    """The header of an image file (Pillow opens lazily: no pixels decoded); ValueError, one line, if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            mode = _mode_kept_of(img)
            turned = _orientation(img) in (5, 6, 7, 8)  # read upright: width and height swap
            return ImageHeader(
                path, str(img.format), mode, (img.width, img.height) if turned else (img.height, img.width)
            )
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot read image {path}: {_one_line(exc)}") from None


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation from what opening read (``getexif()`` would decode a PNG to look for late chunks)."""
    from PIL import Image

    raw = img.info.get("exif")
    if isinstance(raw, bytes):
        exif = Image.Exif()
        exif.load(raw)
        return int(exif.get(_ORIENTATION, 1))
    tags = getattr(img, "tag_v2", None)  # TIFF: the tags are the header
    return int(tags.get(_ORIENTATION, 1)) if tags is not None else 1


def cannot_hold(mode: str, suffix: str) -> str | None:
    """Why a file of ``suffix`` cannot hold an image of ``mode`` without losing data, or None."""
    fmt = WRITE_FORMATS.get(suffix.lower())
    if fmt is None:
        return f"unknown output format {suffix or '(no suffix)'!r}; expected one of {', '.join(WRITE_FORMATS)}"
    if mode in _HOLDS[fmt]:
        return None
    what = "16-bit samples" if mode == "I;16" else "an alpha channel"
    return f"{fmt} cannot hold {what} ({mode}); write .png or .tiff"


@dataclass
class Picture:
    """A decoded image: ``colour`` [1, 3, H, W] float32 in [0, 1] (gray in all three channels), ``alpha``
    [1, 1, H, W] or None, and the ``mode`` it was read as and is written back as."""

    colour: np.ndarray
    alpha: np.ndarray | None
    mode: str
    icc_profile: bytes | None = None
    exif: bytes | None = None  # without an orientation: the pixels are upright

    @property
    def size(self) -> tuple[int, int]:
        return int(self.colour.shape[2]), int(self.colour.shape[3])

    def planes(self) -> np.ndarray:
        """What the model upscales: [1 or 2, 3, H, W], the colour and (if any) the alpha as a gray image."""
        if self.alpha is None:
            return self.colour
        return np.concatenate([self.colour, np.repeat(self.alpha, 3, axis=1)])

    def with_planes(self, planes: np.ndarray) -> Picture:
        """The picture from upscaled ``planes`` (the alpha rule of the module docstring)."""
        colour = planes[:1]
        if self.mode in ("L", "LA", "I;16"):
            colour = np.repeat(colour.mean(axis=1, keepdims=True), 3, axis=1)
        alpha = planes[1:2].mean(axis=1, keepdims=True) if self.alpha is not None else None
        return Picture(colour.astype(np.float32), alpha, self.mode, self.icc_profile, self.exif)


def read_image(path: Path | BinaryIO) -> Picture:
    """Decode an image file, or a file object (see ``decode``); ValueError, one line, if it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return decode(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        where = path if isinstance(path, Path) else getattr(path, "name", "in memory")
        raise ValueError(f"cannot read image {where}: {_one_line(exc)}") from None


def decode(img: Image.Image) -> Picture:
    """An opened image's pixels as the model reads them (the module's table), upright by its EXIF orientation,
    with its ICC profile and EXIF; ValueError where reading it would lose data (``_would_lose``)."""
    from PIL import ImageOps

    mode = _mode_kept_of(img)
    icc = img.info.get("icc_profile") if img.mode != "CMYK" else None
    upright = ImageOps.exif_transpose(img)  # a copy; the orientation tag removed from its EXIF
    exif = upright.getexif()
    colour: np.ndarray
    alpha: np.ndarray | None
    if mode == "I;16":
        gray = np.asarray(upright, dtype=np.float64).clip(0, 65535) / 65535.0
        colour, alpha = gray[None], None
    else:
        pil = upright.convert({"L": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA"}[mode])
        pixels = np.asarray(pil, dtype=np.float32) / 255.0
        pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
        channels = pixels.transpose(2, 0, 1)  # (C, H, W)
        has_alpha = mode in ("RGBA", "LA")
        colour = channels[:-1] if has_alpha else channels
        alpha = channels[-1:] if has_alpha else None
    if colour.shape[0] == 1:
        colour = np.repeat(colour, 3, axis=0)
    as_batch = np.ascontiguousarray(colour[None], dtype=np.float32)  # (1, 3, H, W)
    alpha_batch = None if alpha is None else np.ascontiguousarray(alpha[None], dtype=np.float32)
    kept_icc = icc if isinstance(icc, bytes) else None
    return Picture(as_batch, alpha_batch, mode, kept_icc, exif.tobytes() if len(exif) else None)


def to_uint8(plane: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(plane * 255.0), 0, 255).astype(np.uint8)


def to_pil(picture: Picture) -> Image.Image:
    from PIL import Image

    colour = picture.colour[0]  # (3, H, W)
    if picture.mode == "I;16":
        return Image.fromarray(np.clip(np.rint(colour[0] * 65535.0), 0, 65535).astype(np.uint16))
    planes = [colour[0]] if picture.mode in ("L", "LA") else list(colour)
    if picture.alpha is not None:
        planes.append(picture.alpha[0, 0])
    stacked = to_uint8(np.stack(planes, axis=-1))
    return Image.fromarray(stacked[:, :, 0] if stacked.shape[2] == 1 else stacked)


def encode_image(picture: Picture, suffix: str, *, quality: int = DEFAULT_QUALITY) -> bytes:
    """``picture`` as the bytes of a file of ``suffix``'s format; ValueError where the format would lose data
    (``cannot_hold``)."""
    import io

    reason = cannot_hold(picture.mode, suffix)
    if reason is not None:
        raise ValueError(reason)
    fmt = WRITE_FORMATS[suffix.lower()]
    options: dict[str, object] = (
        {"quality": quality} if fmt == "JPEG" else {"lossless": True, "exact": True} if fmt == "WEBP" else {}
    )
    if picture.icc_profile is not None:
        options["icc_profile"] = picture.icc_profile
    if picture.exif is not None:
        options["exif"] = picture.exif
    buffer = io.BytesIO()
    to_pil(picture).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def write_image(path: Path, picture: Picture, *, quality: int = DEFAULT_QUALITY) -> None:
    """Write ``picture`` in the format of ``path``'s suffix, atomically; ValueError where the format would
    lose data (``cannot_hold``)."""
    try:
        data = encode_image(picture, path.suffix, quality=quality)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    atomic_write_bytes(path, data)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
