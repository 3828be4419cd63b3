"""NCHW shapes and the one optimization profile of an engine: parsing, validation, membership.

Pure Python, no TensorRT: the builder turns a `ShapeProfile` into an `IOptimizationProfile`, the
runner turns the engine's profile back into one and checks every input against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Shape = tuple[int, int, int, int]

DIM_NAMES = ("batch", "channels", "height", "width")
CHANNELS = 3  # RGB in, RGB out: the exported model has a static channel dimension


class ShapeOutsideProfileError(ValueError):
    """An input shape the engine cannot run: outside its optimization profile."""


def format_shape(shape: Sequence[int]) -> str:
    """(1, 3, 64, 64) -> '1x3x64x64', the spelling of the command line and of trtexec."""
    return "x".join(str(d) for d in shape)


def parse_shape(text: str) -> Shape:
    """'1x3x64x64' -> (1, 3, 64, 64); ValueError saying what was expected otherwise."""
    parts = text.strip().lower().split("x")
    if len(parts) != len(DIM_NAMES):
        raise ValueError(f"expected an NCHW shape like 1x3x64x64 (4 dims), found {text!r} ({len(parts)} dims)")
    dims: list[int] = []
    for name, part in zip(DIM_NAMES, parts, strict=True):
        if not part.isdigit():
            raise ValueError(f"expected a positive integer for {name} in {text!r}, found {part!r}")
        value = int(part)
        if value < 1:
            raise ValueError(f"expected a positive integer for {name} in {text!r}, found {value}")
        dims.append(value)
    return (dims[0], dims[1], dims[2], dims[3])


def parse_side_pair(text: str) -> tuple[int, int]:
    """'1080x1920' -> (1080, 1920); ValueError saying what was expected otherwise."""
    parts = text.strip().lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"expected a size HxW like 1080x1920, found {text!r}")
    return int(parts[0]), int(parts[1])


def _check_channels(shape: Shape, role: str) -> None:
    if shape[1] != CHANNELS:
        raise ValueError(f"{role} shape {format_shape(shape)}: expected {CHANNELS} channels (RGB), found {shape[1]}")


@dataclass(frozen=True)
class ShapeProfile:
    """min <= opt <= max in every dimension, 3 channels: what TensorRT would reject, rejected early."""

    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        for role in ("min", "opt", "max"):
            shape = getattr(self, role)
            if len(shape) != len(DIM_NAMES) or any(int(d) < 1 for d in shape):
                raise ValueError(f"{role} shape {shape!r}: expected 4 positive dims (NCHW)")
            _check_channels(shape, role)
        for i, name in enumerate(DIM_NAMES):
            lo, mid, hi = self.min[i], self.opt[i], self.max[i]
            if not lo <= mid <= hi:
                raise ValueError(
                    f"profile {name}: expected min <= opt <= max, found {lo}, {mid}, {hi} "
                    f"(min {format_shape(self.min)}, opt {format_shape(self.opt)}, "
                    f"max {format_shape(self.max)})"
                )

    @classmethod
    def parse(cls, min_text: str, opt_text: str, max_text: str) -> ShapeProfile:
        return cls(parse_shape(min_text), parse_shape(opt_text), parse_shape(max_text))

    @property
    def is_static(self) -> bool:
        return self.min == self.opt == self.max

    def as_dict(self) -> dict[str, str]:
        return {"min": format_shape(self.min), "opt": format_shape(self.opt), "max": format_shape(self.max)}

    def describe(self) -> str:
        return f"min {format_shape(self.min)}, opt {format_shape(self.opt)}, max {format_shape(self.max)}"


def check_shape_in_profile(shape: Sequence[int], profile: ShapeProfile) -> Shape:
    """Return `shape` as a Shape if the engine can run it, raise ShapeOutsideProfileError otherwise."""
    dims = tuple(int(d) for d in shape)
    if len(dims) != len(DIM_NAMES):
        raise ShapeOutsideProfileError(
            f"expected an NCHW input (4 dims), found shape {format_shape(dims)} ({len(dims)} dims)"
        )
    problems = [
        f"{name} {value} not in [{lo}, {hi}]"
        for name, value, lo, hi in zip(DIM_NAMES, dims, profile.min, profile.max, strict=True)
        if not lo <= value <= hi
    ]
    if problems:
        raise ShapeOutsideProfileError(
            f"input shape {format_shape(dims)} is outside the engine's profile ({profile.describe()}): "
            + "; ".join(problems)
            + ". Rebuild the engine with a wider profile, or tile the input."
        )
    return (dims[0], dims[1], dims[2], dims[3])
