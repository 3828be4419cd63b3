"""The fused kernel's function, written independently of esc.attention, for the kernel tests (GPU and emulated).

Pad reflect, partition into windows, softmax(q k^T / sqrt(d) + bias) v, merge, crop, computed in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

Shape = tuple[int, int, int, int, int, int]  # (batch, channels C, heads, height, width, window)


def reference_window_attention(qkv: Tensor, table: Tensor, num_heads: int, ws: int) -> Tensor:
    """The official function in float64: (B, 3C, H, W) qkv, (heads, (2w-1)^2) table -> (B, C, H, W)."""
    x = qkv.double()
    b, c3, h, w = x.shape
    d = c3 // (3 * num_heads)
    pad_h, pad_w = (ws - h % ws) % ws, (ws - w % ws) % ws
    x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
    hp, wp = x.shape[-2:]
    nh, nw = hp // ws, wp // ws
    x = x.view(b, 3, num_heads, d, nh, ws, nw, ws)
    x = x.permute(1, 0, 4, 6, 2, 5, 7, 3)  # (3, B, nh, nw, heads, ws, ws, d)
    x = x.reshape(3, b * nh * nw, num_heads, ws * ws, d)
    q, k, v = x[0], x[1], x[2]
    token = torch.arange(ws * ws, device=qkv.device)
    row, col = token // ws, token % ws
    index = (row[None, :] - row[:, None] + ws - 1) * (2 * ws - 1) + (col[None, :] - col[:, None] + ws - 1)
    bias = table.double()[:, index]  # (heads, N_q, N_k)
    score = q @ k.transpose(-2, -1) / d**0.5 + bias
    out = torch.softmax(score, dim=-1) @ v  # (B*nW, heads, N, d)
    out = out.view(b, nh, nw, num_heads, ws, ws, d)
    out = out.permute(0, 3, 6, 1, 4, 2, 5)  # (B, heads, d, nh, ws, nw, ws)
    return out.reshape(b, num_heads * d, hp, wp)[:, :, :h, :w]


def random_inputs(shape: Shape, dtype: torch.dtype, seed: int, device: str = "cuda") -> tuple[Tensor, Tensor]:
    """Standard-normal qkv of ``dtype`` and an fp32 table, on ``device``."""
    b, c, heads, h, w, ws = shape
    generator = torch.Generator().manual_seed(seed)
    qkv = torch.randn(b, 3 * c, h, w, generator=generator).to(device, dtype)
    table = torch.randn(heads, (2 * ws - 1) ** 2, generator=generator).to(device)
    return qkv, table
