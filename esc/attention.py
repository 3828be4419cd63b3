"""Window self-attention with a relative-position bias, as ESC runs it once per block.

Every backend computes the same function of one qkv feature map: reflect-pad bottom/right to a
multiple of the window, split into w x w windows, attend with ``softmax(q k^T / sqrt(d) + bias) v``
per head, merge the windows and crop back. The official code pads the block input before its 1x1
``to_qkv`` convolution; padding after it gives the same pixels, because a 1x1 convolution acts on
each pixel alone. Working on the qkv map is also the contract of the TensorRT plugin.

Backends are chosen per model (``attention=`` on the model constructor):
``naive`` (explicit math, the readable reference), ``sdpa`` (torch's scaled_dot_product_attention),
``flex`` (FlexAttention with the bias as a score modification, compiled), ``fused`` (this project's
CUDA kernel, see ``esc.fused_attention``). More can be registered with ``register_attention``;
importing a module registers nothing (the export forms: ``esc_deploy.export.onnx_graph.attention.register()``, which
the exporter calls), so the set of backends never depends on what a process imported first.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from torch import Tensor


class WindowAttentionSpec(Protocol):
    """What a backend may read from the module it serves."""

    num_heads: int
    window_size: int
    relative_position_bias: torch.nn.Parameter

    def expanded_bias(self) -> Tensor: ...


# fn(module, qkv) -> out; qkv: (B, 3C, H, W) with channels ordered (qkv heads c); out: (B, C, H, W).
AttentionFn = Callable[[WindowAttentionSpec, "Tensor"], "Tensor"]

_BACKENDS: dict[str, AttentionFn] = {}


def register_attention(name: str) -> Callable[[AttentionFn], AttentionFn]:
    """Decorator that makes ``fn`` selectable as ``attention=name``."""

    def add(fn: AttentionFn) -> AttentionFn:
        _BACKENDS[name] = fn
        return fn

    return add


def available_attention() -> tuple[str, ...]:
    return tuple(sorted(_BACKENDS))


def get_attention(name: str) -> AttentionFn:
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown attention {name!r}; expected one of {available_attention()}") from None


def default_attention(device: torch.device) -> str:
    """FlexAttention on CUDA (the paper's choice), SDPA elsewhere."""
    return "flex" if device.type == "cuda" else "sdpa"


def relative_position_indices(window_size: int) -> tuple[Tensor, Tensor]:
    """Row and column indices into the (2w-1) x (2w-1) bias table, each of shape (w, w).

    ``index[q, k] = k - q + w - 1`` for one axis. The official code enumerates every (query, key)
    pair of a window into a (heads * N * N, 2) table; two w x w tables carry the same information.
    """
    pos = torch.arange(window_size)
    index = pos[None, :] - pos[:, None] + window_size - 1  # (w_q, w_k)
    return index, index.clone()


def expand_bias(table: Tensor, index_h: Tensor, index_w: Tensor) -> Tensor:
    """(heads, (2w-1)^2) table -> (heads, N, N) bias with N = w * w, token order (row, col)."""
    heads = table.shape[0]
    w = index_h.shape[0]
    grid = table.view(heads, 2 * w - 1, 2 * w - 1)
    bias = grid[:, index_h][:, :, :, index_w]  # (heads, w_qh, w_kh, w_qw, w_kw)
    bias = bias.permute(0, 1, 3, 2, 4)  # (heads, w_qh, w_qw, w_kh, w_kw)
    return bias.reshape(heads, w * w, w * w)


def pad_to_window(x: Tensor, window_size: int) -> Tensor:
    """Reflect-pad bottom/right so that both sides are multiples of the window (official rule).

    Always pads (possibly by zero): a shape-dependent branch would break export with dynamic sizes.
    """
    h, w = x.shape[-2:]
    pad_h = (window_size - h % window_size) % window_size
    pad_w = (window_size - w % window_size) % window_size
    return F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")


def partition(qkv: Tensor, num_heads: int, window_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """(B, 3C, Hp, Wp) -> q, k, v each (B * nWindows, heads, N, d)."""
    b, c3, hp, wp = qkv.shape
    d = c3 // (3 * num_heads)
    ws = window_size
    nh, nw = hp // ws, wp // ws
    x = qkv.view(b, 3, num_heads, d, nh, ws, nw, ws)
    x = x.permute(1, 0, 4, 6, 2, 5, 7, 3)  # (3, B, nh, nw, heads, ws, ws, d)
    x = x.reshape(3, b * nh * nw, num_heads, ws * ws, d)
    return x[0], x[1], x[2]


def merge(out: Tensor, batch: int, height: int, width: int, window_size: int) -> Tensor:
    """(B * nWindows, heads, N, d) over a padded (Hp, Wp) map -> (B, heads * d, Hp, Wp)."""
    _, heads, _, d = out.shape
    ws = window_size
    nh, nw = height // ws, width // ws
    x = out.reshape(batch, nh, nw, heads, ws, ws, d)
    x = x.permute(0, 3, 6, 1, 4, 2, 5)  # (B, heads, d, nh, ws, nw, ws)
    return x.reshape(batch, heads * d, height, width)


def windowed(attend: Callable[[WindowAttentionSpec, Tensor, Tensor, Tensor], Tensor]) -> AttentionFn:
    """Wrap a per-window attention ``attend(module, q, k, v)`` into the full map-to-map function."""

    @functools.wraps(attend)
    def run(module: WindowAttentionSpec, qkv: Tensor) -> Tensor:
        b, _, h, w = qkv.shape
        padded = pad_to_window(qkv, module.window_size)
        q, k, v = partition(padded, module.num_heads, module.window_size)
        out = attend(module, q, k, v)
        out = merge(out, b, padded.shape[-2], padded.shape[-1], module.window_size)
        return out[:, :, :h, :w]

    return run


@register_attention("naive")
@windowed
def naive_attention(module: WindowAttentionSpec, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """The official ``attention``: scores scaled after the product, bias added, softmax."""
    score = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
    score = score + module.expanded_bias().to(score.dtype)
    return F.softmax(score, dim=-1) @ v


@register_attention("sdpa")
@windowed
def sdpa_attention(module: WindowAttentionSpec, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    bias = module.expanded_bias().to(q.dtype).unsqueeze(0)  # (1, heads, N, N)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


@functools.cache
def _compiled_flex_attention() -> Callable[..., Tensor]:
    from torch.nn.attention.flex_attention import flex_attention

    # Static shapes except the window count (flex_window_attention marks it): the sequence length N = w * w is then
    # known to divide FlexAttention's blocks (its fast path), and a new image size compiles nothing.
    return torch.compile(flex_attention)


@register_attention("flex")
@windowed
def flex_window_attention(module: WindowAttentionSpec, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """FlexAttention (the paper's backend): the bias is looked up per score, never expanded."""
    if q.device.type != "cuda":
        # torch 2.13's inductor fails to compile flex_attention for CPU (IndexError in lowering).
        raise RuntimeError(f"attention 'flex' needs a CUDA device, got {q.device.type}; use 'sdpa' or 'naive'")
    table = module.relative_position_bias
    ws = module.window_size

    def add_bias(score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        rel_h = kv_idx // ws - q_idx // ws + ws - 1
        rel_w = kv_idx % ws - q_idx % ws + ws - 1
        return score + table[h, rel_h * (2 * ws - 1) + rel_w].to(score.dtype)

    for tensor in (q, k, v):
        torch._dynamo.maybe_mark_dynamic(tensor, 0)  # B * windows; "maybe": a single window stays a constant
    return _compiled_flex_attention()(q, k, v, score_mod=add_bias)


@register_attention("fused")
def fused_attention(module: WindowAttentionSpec, qkv: Tensor) -> Tensor:
    """This project's CUDA kernel: padding, windowing, bias and cropping by index arithmetic."""
    from esc.fused_attention import fused_window_attention

    return fused_window_attention(qkv, module.relative_position_bias, module.num_heads, module.window_size)
