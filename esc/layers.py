"""Building blocks of ESC, ESC-FP and ESC-Real (official code: github.com/dslisleedh/ESC, esc/archs).

Module and parameter names follow the official classes exactly, so that official checkpoints load
with strict key matching. Where the official evaluation path only handles batch 1 (the per-image
dynamic kernel reshaped to ``(pdim, 1, 3, 3)``) these modules use the official training path, which
is the same math for any batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from esc.attention import default_attention, expand_bias, get_attention, relative_position_indices

DYNAMIC_KERNEL_SIZE = 3


def geo_ensemble(kernel: Tensor) -> Tensor:
    """Feature-level geometric re-parameterisation: mean of the 8 flips/rotations of ``kernel``."""
    rot = torch.rot90(kernel, -1, [2, 3])
    views = [kernel, kernel.flip([3]), kernel.flip([2]), kernel.flip([2, 3])]
    views += [rot, rot.flip([3]), rot.flip([2]), rot.flip([2, 3])]
    total = views[0]
    for view in views[1:]:  # the official order of additions, for bit-level agreement
        total = total + view
    return total / 8


def dynamic_depthwise_grouped(x: Tensor, kernel: Tensor) -> Tensor:
    """Per-image 3x3 depthwise conv: x (B, C, H, W), kernel (B, C, k, k); batch folded into groups.

    Fast in eager mode, but the group count depends on the batch, so it cannot be exported with a
    dynamic batch.
    """
    b, c, h, w = x.shape
    k = kernel.shape[-1]
    out = F.conv2d(x.reshape(1, b * c, h, w), kernel.reshape(b * c, 1, k, k), padding=k // 2, groups=b * c)
    return out.view(b, c, h, w)


def tap_extractor(channels: int, k: int) -> Tensor:
    """(channels * k*k, 1, k, k) one-hot kernels: a depthwise conv with them copies each channel's
    k*k shifted neighbourhoods into separate channels, exactly (products with 1 and 0 only)."""
    return torch.eye(k * k).view(k * k, 1, k, k).repeat(channels, 1, 1, 1)


def dynamic_depthwise_batch_free(x: Tensor, kernel: Tensor, taps: Tensor) -> Tensor:
    """The same convolution with batch as a free dimension (exportable with a dynamic batch).

    ``taps`` comes from ``tap_extractor``. The k*k products are then accumulated with fused
    multiply-adds in row-major tap order, as CPU convolution kernels do, which makes the result
    bit-identical to ``dynamic_depthwise_grouped`` on CPU. Slicing only the static tap axis keeps
    export fast (no shape arithmetic on the image sides).
    """
    b, c, h, w = x.shape
    k = kernel.shape[-1]
    shifted = F.conv2d(x, taps.to(x.dtype), padding=k // 2, groups=c).view(b, c, k * k, h, w)
    weights = kernel.reshape(b, c, k * k, 1, 1)
    out = shifted[:, :, 0] * weights[:, :, 0]
    for t in range(1, k * k):
        out = torch.addcmul(out, shifted[:, :, t], weights[:, :, t])
    return out


class LayerNorm2d(nn.Module):
    """LayerNorm over channels of an NCHW map (official ``LayerNorm``, channels_first, eps 1e-6)."""

    def __init__(self, dim: int, *, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvFFN(nn.Module):
    def __init__(self, dim: int, kernel_size: int, exp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * exp_ratio)
        self.proj = nn.Conv2d(dim, hidden, 1)
        self.dwc = nn.Conv2d(hidden, hidden, kernel_size, 1, kernel_size // 2, groups=hidden)
        self.aggr = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.gelu(self.proj(x))
        x = F.gelu(self.dwc(x)) + x
        return self.aggr(x)


def _dynamic_kernel_proj(pdim: int, reduction: int) -> nn.Sequential:
    """Global pool -> 1x1 -> GELU -> 1x1 producing a 3x3 kernel per channel and image."""
    k2 = DYNAMIC_KERNEL_SIZE**2
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1),
        nn.Conv2d(pdim, pdim // reduction, 1),
        nn.GELU(),
        nn.Conv2d(pdim // reduction, pdim * k2, 1),
    )


class ConvolutionalAttention(nn.Module):
    """ConvAttn of ESC and ESC-Real: shared large kernel plus a per-image dynamic 3x3 kernel.

    Only the first ``pdim`` channels are updated; the rest pass through.
    """

    def __init__(self, pdim: int) -> None:
        super().__init__()
        self.pdim = pdim
        self.dwc_proj = _dynamic_kernel_proj(pdim, reduction=2)
        self.taps: Tensor | None
        self.register_buffer("taps", None, persistent=False)  # set by make_batch_free(): export form

    def forward(self, x: Tensor, lk_filter: Tensor) -> Tensor:
        """x: (B, C, H, W), lk_filter: (pdim, pdim, k, k) -> (B, C, H, W)."""
        x1, x2 = torch.split(x, [self.pdim, x.shape[1] - self.pdim], dim=1)
        kernel = self.dwc_proj(x1).view(x.shape[0], self.pdim, DYNAMIC_KERNEL_SIZE, DYNAMIC_KERNEL_SIZE)
        if self.taps is None:
            dynamic = dynamic_depthwise_grouped(x1, kernel)
        else:
            dynamic = dynamic_depthwise_batch_free(x1, kernel, self.taps)
        x1 = F.conv2d(x1, lk_filter, padding=lk_filter.shape[-1] // 2) + dynamic
        return torch.cat([x1, x2], dim=1)

    def make_batch_free(self) -> None:
        self.taps = tap_extractor(self.pdim, DYNAMIC_KERNEL_SIZE)


class DecomposedConvolutionalAttention(nn.Module):
    """ConvAttn of ESC-FP: 1x1 channel mix, then one depthwise k x k kernel (static + dynamic)."""

    def __init__(self, pdim: int) -> None:
        super().__init__()
        self.pdim = pdim
        self.proj = _dynamic_kernel_proj(pdim, reduction=4)
        self.taps: Tensor | None
        self.register_buffer("taps", None, persistent=False)  # set by make_batch_free(): export form

    def forward(self, x: Tensor, lk_channel: Tensor, lk_spatial: Tensor) -> Tensor:
        """x: (B, C, H, W), lk_channel: (pdim, pdim, 1, 1), lk_spatial: (pdim, 1, k, k)."""
        x1, x2 = torch.split(x, [self.pdim, x.shape[1] - self.pdim], dim=1)
        b = x.shape[0]
        k = lk_spatial.shape[-1]
        kernel = self.proj(x1).view(b, self.pdim, DYNAMIC_KERNEL_SIZE, DYNAMIC_KERNEL_SIZE)
        x1 = F.conv2d(x1, lk_channel)
        if self.taps is not None:
            static = F.conv2d(x1, lk_spatial, padding=k // 2, groups=self.pdim)
            x1 = static + dynamic_depthwise_batch_free(x1, kernel, self.taps)
        else:
            # Official form: the 3x3 kernel zero-padded to k x k and added to the static one.
            n_pad = (k - DYNAMIC_KERNEL_SIZE) // 2
            combined = F.pad(kernel, (n_pad,) * 4) + lk_spatial.view(1, self.pdim, k, k)
            x1 = dynamic_depthwise_grouped(x1, combined)
        return torch.cat([x1, x2], dim=1)

    def make_batch_free(self) -> None:
        """Static depthwise conv plus the dynamic 3x3 taps, instead of one per-image k x k kernel."""
        self.taps = tap_extractor(self.pdim, DYNAMIC_KERNEL_SIZE)


class ConvAttnWrapper(nn.Module):
    def __init__(self, dim: int, pdim: int, *, decomposed: bool) -> None:
        super().__init__()
        self.plk: nn.Module = DecomposedConvolutionalAttention(pdim) if decomposed else ConvolutionalAttention(pdim)
        self.aggr = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor, *lk: Tensor) -> Tensor:
        return self.aggr(self.plk(x, *lk))


class WindowAttention(nn.Module):
    """32x32-window self-attention with a learned relative-position bias (one per block)."""

    def __init__(self, dim: int, window_size: int, num_heads: int, *, attention: str = "auto") -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.attention = attention
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.to_out = nn.Conv2d(dim, dim, 1)
        self.relative_position_bias = nn.Parameter(torch.randn(num_heads, (2 * window_size - 1) ** 2) * 0.001)
        index_h, index_w = relative_position_indices(window_size)
        self.index_h: Tensor
        self.index_w: Tensor
        self.register_buffer("index_h", index_h, persistent=False)
        self.register_buffer("index_w", index_w, persistent=False)

    def expanded_bias(self) -> Tensor:
        """(heads, N, N) additive bias for one window."""
        return expand_bias(self.relative_position_bias, self.index_h, self.index_w)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        qkv = self.to_qkv(x)  # (B, 3C, H, W), channels (qkv heads c)
        name = default_attention(qkv.device) if self.attention == "auto" else self.attention
        out = get_attention(name)(self, qkv)
        return self.to_out(out.to(qkv.dtype))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window_size={self.window_size}, num_heads={self.num_heads}, attention={self.attention}"


class Block(nn.Module):
    """One ESC block: FFN, window attention, then ``conv_blocks`` x (LN, FFN, ConvAttn)."""

    def __init__(
        self,
        *,
        dim: int,
        pdim: int,
        conv_blocks: int,
        window_size: int,
        num_heads: int,
        exp_ratio: float,
        proj_ratio: float,
        use_ln: bool,
        decomposed: bool,
        attention: str,
    ) -> None:
        super().__init__()
        self.ln_proj = LayerNorm2d(dim)
        self.proj = ConvFFN(dim, 3, proj_ratio)
        self.ln_attn = LayerNorm2d(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, attention=attention)
        self.lns = nn.ModuleList([LayerNorm2d(dim) if use_ln else nn.Identity() for _ in range(conv_blocks)])
        self.pconvs = nn.ModuleList([ConvAttnWrapper(dim, pdim, decomposed=decomposed) for _ in range(conv_blocks)])
        self.convffns = nn.ModuleList([ConvFFN(dim, 3, exp_ratio) for _ in range(conv_blocks)])
        self.ln_out = LayerNorm2d(dim)
        self.conv_out = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: Tensor, *lk: Tensor) -> Tensor:
        """x: (B, dim, H, W); lk: the shared large kernel(s) -> (B, dim, H, W)."""
        skip = x
        x = self.proj(self.ln_proj(x))
        x = x + self.attn(self.ln_attn(x))
        for ln, pconv, convffn in zip(self.lns, self.pconvs, self.convffns, strict=True):
            x = x + pconv(convffn(ln(x)), *lk)
        return self.conv_out(self.ln_out(x)) + skip
