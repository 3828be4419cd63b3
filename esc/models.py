"""ESC, ESC-FP and ESC-Real networks (Lee, Yun, Ro, "Emulating Self-Attention with Convolution for
Efficient Image Super-Resolution", ICCV 2025; official code github.com/dslisleedh/ESC).

The same functions as the official ``ESC``, ``ESCFP`` and ``ESCReal`` classes, with identical
state-dict keys, for any batch size in eval mode.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from esc.attention import get_attention
from esc.config import ESCConfig, preset_config
from esc.layers import (
    Block,
    ConvolutionalAttention,
    DecomposedConvolutionalAttention,
    LayerNorm2d,
    WindowAttention,
    geo_ensemble,
)


class ESCBase(nn.Module):
    """What every family shares: config, blocks, input checks, attention choice, deploy form."""

    config: ESCConfig

    def __init__(self, config: ESCConfig, *, attention: str = "auto", proj_ratio: float, decomposed: bool) -> None:
        super().__init__()
        self.config = config
        self.deployed = False
        self.proj = nn.Conv2d(3, config.dim, 3, 1, 1)
        self.blocks = nn.ModuleList(
            Block(
                dim=config.dim,
                pdim=config.pdim,
                conv_blocks=config.conv_blocks,
                window_size=config.window_size,
                num_heads=config.num_heads,
                exp_ratio=config.exp_ratio,
                proj_ratio=proj_ratio,
                use_ln=config.use_ln,
                decomposed=decomposed,
                attention=attention,
            )
            for _ in range(config.n_blocks)
        )
        self.last = nn.Conv2d(config.dim, config.dim, 3, 1, 1)
        self.set_attention(attention)

    @property
    def attention(self) -> str:
        return self.window_attentions()[0].attention

    def window_attentions(self) -> list[WindowAttention]:
        return [m for m in self.modules() if isinstance(m, WindowAttention)]

    def set_attention(self, name: str) -> None:
        """Choose this model's attention backend: ``auto``, ``naive``, ``sdpa``, ``flex``, ``fused``."""
        if name != "auto":
            get_attention(name)  # raises on unknown names
        for module in self.window_attentions():
            module.attention = name

    def check_input(self, x: Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"expected a 4-D (B, 3, H, W) tensor, got shape {tuple(x.shape)}")
        if x.shape[1] != 3:
            raise ValueError(f"expected 3 (RGB) channels, got {x.shape[1]} in shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"expected a floating-point tensor, got {x.dtype}")
        h, w = x.shape[-2:]
        if h < self.config.min_side or w < self.config.min_side:
            raise ValueError(
                f"input {h}x{w} is too small: with window {self.config.window_size} each side must be "
                f">= {self.config.min_side} (minimum side for reflect padding)"
            )

    def features(self, x: Tensor, *lk: Tensor) -> tuple[Tensor, Tensor]:
        """Checked input -> (deep features after all blocks, shallow features for the skip)."""
        self.check_input(x)
        skip = self.proj(x)
        feat = skip
        for block in self.blocks:
            feat = block(feat, *lk)
        return feat, skip

    def to_deploy(self) -> ESCBase:
        """A copy for export: constant large kernel, batch-free dynamic conv; same outputs."""
        model = copy.deepcopy(self)
        model.fold_()
        for module in model.modules():
            if isinstance(module, ConvolutionalAttention | DecomposedConvolutionalAttention):
                module.make_batch_free()
        model.deployed = True
        return model.eval()

    def fold_(self) -> None:
        """Fold train-time re-parameterisations into constants (families override)."""

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.to_dict().items())


class GeoKernelNet(ESCBase):
    """ESC and ESC-Real: one full pdim x pdim large kernel, shared by every block and seen through
    the mean of its 8 flips/rotations (feature-level geometric re-parameterisation)."""

    def __init__(self, config: ESCConfig, *, attention: str) -> None:
        super().__init__(config, attention=attention, proj_ratio=2.0, decomposed=False)
        k = config.kernel_size
        self.plk_filter = nn.Parameter(torch.empty(config.pdim, config.pdim, k, k))
        nn.init.orthogonal_(self.plk_filter)  # official init: stabilises early training
        # Official init: the dynamic kernel starts at zero, so ConvAttn starts as the static kernel.
        for module in self.modules():
            if isinstance(module, ConvolutionalAttention):
                nn.init.zeros_(module.dwc_proj[-1].weight)  # type: ignore[arg-type]
                nn.init.zeros_(module.dwc_proj[-1].bias)  # type: ignore[arg-type]

    def large_kernel(self) -> Tensor:
        return self.plk_filter if self.deployed else geo_ensemble(self.plk_filter)

    def fold_(self) -> None:
        with torch.no_grad():
            self.plk_filter = nn.Parameter(geo_ensemble(self.plk_filter))


class ESC(GeoKernelNet):
    """ESC (light, base, XL): pixel-shuffle upsampler plus a nearest-neighbour residual."""

    def __init__(self, config: ESCConfig, *, attention: str = "auto") -> None:
        if config.family != "esc":
            raise ValueError(f"ESC needs family 'esc', got {config.family!r}")
        super().__init__(config, attention=attention)
        self.to_img = nn.Conv2d(config.dim, 3 * config.scale**2, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, 3, H, W) -> (B, 3, s*H, s*W)."""
        s = self.config.scale
        feat, skip = self.features(x, self.large_kernel())
        feat = self.last(feat) + skip
        base = x.unsqueeze(2).expand(-1, -1, s * s, -1, -1).flatten(1, 2)  # repeat_interleave(s*s, dim=1)
        return F.pixel_shuffle(self.to_img(feat) + base, s)


class ESCFP(ESCBase):
    """ESC-FP: decomposed large kernel (1x1 channel mix + depthwise), bicubic residual."""

    def __init__(self, config: ESCConfig, *, attention: str = "auto") -> None:
        if config.family != "esc-fp":
            raise ValueError(f"ESCFP needs family 'esc-fp', got {config.family!r}")
        super().__init__(config, attention=attention, proj_ratio=1.5, decomposed=True)
        k = config.kernel_size
        self.lk_channel = nn.Parameter(torch.randn(config.pdim, config.pdim, 1, 1))
        self.lk_spatial = nn.Parameter(torch.empty(config.pdim, 1, k, k))
        nn.init.orthogonal_(self.lk_spatial)
        self.ln_last = LayerNorm2d(config.dim)
        self.to_img = nn.Conv2d(config.dim, 3 * config.scale**2, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, 3, H, W) -> (B, 3, s*H, s*W)."""
        s = self.config.scale
        feat, skip = self.features(x, self.lk_channel, self.lk_spatial)
        feat = self.last(self.ln_last(feat)) + skip
        base = F.interpolate(x, scale_factor=s, mode="bicubic")
        return F.pixel_shuffle(self.to_img(feat), s) + base


class ESCReal(GeoKernelNet):
    """ESC-Real (real-world degradations): nearest+conv upsampler and a reflect-padded input skip."""

    def __init__(self, config: ESCConfig, *, attention: str = "auto") -> None:
        if config.family != "esc-real":
            raise ValueError(f"ESCReal needs family 'esc-real', got {config.family!r}")
        super().__init__(config, attention=attention)
        dim = config.dim
        self.to_img = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(dim, dim, 3, 1, 1),
            nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(dim, dim, 3, 1, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(dim, dim, 3, 1, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(dim, 3, 3, 1, 1),
        )
        self.skip = nn.Sequential(
            nn.Conv2d(3, dim * 2, 1),
            nn.Conv2d(dim * 2, dim * 2, 7, 1, 3, groups=dim * 2, padding_mode="reflect"),
            nn.LeakyReLU(0.2),
            nn.Conv2d(dim * 2, dim, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, 3, H, W) -> (B, 3, 4H, 4W)."""
        feat, skip = self.features(x, self.large_kernel())
        feat = self.last(feat) + skip + self.skip(x)
        return self.to_img(feat)


_FAMILY_CLASSES: dict[str, type[ESCBase]] = {"esc": ESC, "esc-fp": ESCFP, "esc-real": ESCReal}


def create_model(config: ESCConfig, *, attention: str = "auto") -> ESCBase:
    """The network for ``config`` (random initialisation, eval mode)."""
    cls: Any = _FAMILY_CLASSES[config.family]
    model: ESCBase = cls(config, attention=attention)
    return model.eval()


def build_model(name: str, *, scale: int = 4, attention: str = "auto") -> ESCBase:
    """A published configuration (``esc-light``, ``esc``, ``esc-xl``, ``esc-fp``, ``esc-real``),
    randomly initialised as the official code does, in eval mode."""
    return create_model(preset_config(name, scale=scale), attention=attention)
