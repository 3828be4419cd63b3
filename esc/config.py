"""Hyperparameters of the ESC families and the published presets (official options/test/*.yaml)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, get_args

Family = Literal["esc", "esc-fp", "esc-real"]
FAMILIES: tuple[str, ...] = get_args(Family)

# ESC-Real's upsampler is two fixed nearest-neighbour x2 stages: it exists at x4 only.
REAL_SCALE = 4


@dataclass(frozen=True)
class ESCConfig:
    """Everything that fixes the shape of an ESC network; checkpoints are inferred into this."""

    family: Family
    dim: int
    pdim: int
    kernel_size: int
    n_blocks: int
    conv_blocks: int
    window_size: int
    num_heads: int
    scale: int
    exp_ratio: float
    use_ln: bool

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        for name in (
            "dim",
            "pdim",
            "kernel_size",
            "n_blocks",
            "conv_blocks",
            "window_size",
            "num_heads",
            "scale",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if not 0 < self.pdim < self.dim:
            raise ValueError(f"pdim must be in (0, dim={self.dim}), got {self.pdim}")
        if self.kernel_size % 2 == 0 or self.kernel_size < 3:
            raise ValueError(f"kernel_size must be odd and >= 3, got {self.kernel_size}")
        if self.window_size < 2:
            raise ValueError(f"window_size must be >= 2, got {self.window_size}")
        if self.exp_ratio <= 0:
            raise ValueError(f"exp_ratio must be positive, got {self.exp_ratio}")
        if self.family != "esc" and not self.use_ln:
            raise ValueError(f"{self.family} always has a LayerNorm before each ConvFFN (use_ln=True)")
        if self.family == "esc-real" and self.scale != REAL_SCALE:
            raise ValueError(f"esc-real upsamples by {REAL_SCALE} only, got scale {self.scale}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def min_side(self) -> int:
        """Smallest input side: reflect padding to the window needs pad < side."""
        return self.window_size // 2 + 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_PRESETS: dict[str, dict[str, Any]] = {
    "esc-light": dict(family="esc", dim=64, pdim=16, kernel_size=13, n_blocks=3, conv_blocks=5,
                      window_size=32, num_heads=4, exp_ratio=1.25, use_ln=False),
    "esc": dict(family="esc", dim=64, pdim=16, kernel_size=13, n_blocks=5, conv_blocks=5,
                window_size=32, num_heads=4, exp_ratio=1.25, use_ln=False),
    "esc-xl": dict(family="esc", dim=192, pdim=48, kernel_size=13, n_blocks=8, conv_blocks=5,
                   window_size=48, num_heads=12, exp_ratio=1.25, use_ln=True),
    "esc-fp": dict(family="esc-fp", dim=48, pdim=16, kernel_size=13, n_blocks=5, conv_blocks=5,
                   window_size=32, num_heads=3, exp_ratio=1.25, use_ln=True),
    "esc-real": dict(family="esc-real", dim=64, pdim=16, kernel_size=13, n_blocks=10, conv_blocks=5,
                     window_size=32, num_heads=4, exp_ratio=2.0, use_ln=True),
}  # fmt: skip
PRESETS: tuple[str, ...] = tuple(_PRESETS)


def preset_config(name: str, *, scale: int = 4) -> ESCConfig:
    """The official hyperparameters of a published model at the given scale."""
    try:
        params = _PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; expected one of {PRESETS}") from None
    return ESCConfig(scale=scale, **params)
