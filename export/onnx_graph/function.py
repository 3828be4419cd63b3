"""The model-local ONNX function ``trt.plugins::ESCWindowAttention``: the reference math of the node.

TensorRT replaces each node with the plugin; ONNX Runtime (and any runtime without the plugin)
inlines this body. It is written once for any window, head count, size and float type: sizes come
from ``Shape``, window and heads from the node's attributes, constants are cast like the input, and
the softmax runs in float32.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import onnxscript
from onnxscript import opset18 as op

from esc_deploy.export import plugin_contract as contract

if TYPE_CHECKING:
    import onnx

_FLOAT = 1  # onnx.TensorProto.FLOAT
_PLUGINS = onnxscript.values.Opset(contract.DOMAIN, 1)


@onnxscript.script(_PLUGINS, default_opset=op)
def ESCWindowAttention(qkv, table, num_heads: int, window_size: int, plugin_version: str, plugin_namespace: str):  # type: ignore[no-untyped-def]
    zero = op.Constant(value_ints=[0])
    one = op.Constant(value_ints=[1])
    three = op.Constant(value_ints=[3])
    ws = op.Reshape(op.Constant(value_int=window_size), one)
    heads = op.Reshape(op.Constant(value_int=num_heads), one)
    b = op.Shape(qkv, start=0, end=1)
    c3 = op.Shape(qkv, start=1, end=2)
    h = op.Shape(qkv, start=2, end=3)
    w = op.Shape(qkv, start=3, end=4)
    # Reflect padding on the bottom/right to a multiple of the window (the official rule).
    pad_h = op.Mod(op.Sub(ws, op.Mod(h, ws)), ws)
    pad_w = op.Mod(op.Sub(ws, op.Mod(w, ws)), ws)
    x = op.Pad(qkv, op.Concat(zero, zero, zero, zero, zero, zero, pad_h, pad_w, axis=0), mode="reflect")
    hp = op.Add(h, pad_h)
    wp = op.Add(w, pad_w)
    nh = op.Div(hp, ws)
    nw = op.Div(wp, ws)
    d = op.Div(c3, op.Mul(three, heads))
    tokens = op.Mul(ws, ws)
    # (B, 3C, Hp, Wp) -> (3, B*nWindows, heads, N, d), channels ordered (qkv heads c). Channels go
    # last first, so that the window transpose moves rows of d contiguous values: two passes, but
    # each far cheaper on CPU than one 8-D transpose whose innermost axis has a stride of Hp*Wp.
    x = op.Transpose(x, perm=[0, 2, 3, 1])  # (B, Hp, Wp, 3C)
    x = op.Reshape(x, op.Concat(b, nh, ws, nw, ws, three, heads, d, axis=0))
    x = op.Transpose(x, perm=[5, 0, 1, 3, 6, 2, 4, 7])  # (3, B, nh, nw, heads, ws, ws, d)
    x = op.Reshape(x, op.Concat(three, op.Constant(value_ints=[-1]), heads, tokens, d, axis=0))
    q = op.Gather(x, op.Constant(value_int=0), axis=0)
    k = op.Gather(x, op.Constant(value_int=1), axis=0)
    v = op.Gather(x, op.Constant(value_int=2), axis=0)
    scale = op.Reciprocal(op.Sqrt(op.Cast(d, to=_FLOAT)))
    score = op.MatMul(op.Mul(q, op.CastLike(scale, q)), op.Transpose(k, perm=[0, 1, 3, 2]))
    # Relative-position bias: index[q, k] = k - q + w - 1 per axis into the (2w-1)^2 table.
    pos = op.Range(op.Constant(value_int=0), op.Constant(value_int=window_size), op.Constant(value_int=1))
    index = op.Add(op.Sub(op.Unsqueeze(pos, zero), op.Unsqueeze(pos, one)), op.Sub(ws, one))
    side = op.Sub(op.Add(ws, ws), one)
    grid = op.Reshape(table, op.Concat(heads, side, side, axis=0))
    grid = op.Gather(op.Gather(grid, index, axis=1), index, axis=3)  # (heads, qh, kh, qw, kw)
    bias = op.Reshape(op.Transpose(grid, perm=[0, 1, 3, 2, 4]), op.Concat(heads, tokens, tokens, axis=0))
    prob = op.Softmax(op.Add(op.Cast(score, to=_FLOAT), op.Cast(bias, to=_FLOAT)), axis=-1)
    out = op.MatMul(op.CastLike(prob, v), v)  # (B*nWindows, heads, N, d)
    # Merge windows back (channels last, then one plain transpose to NCHW) and crop the padding.
    out = op.Reshape(out, op.Concat(b, nh, nw, heads, ws, ws, d, axis=0))
    out = op.Transpose(out, perm=[0, 1, 4, 2, 5, 3, 6])  # (B, nh, ws, nw, ws, heads, d)
    out = op.Reshape(out, op.Concat(b, op.Mul(hp, wp), op.Mul(heads, d), axis=0))
    out = op.Transpose(out, perm=[0, 2, 1])  # (B, heads*d, Hp*Wp)
    out = op.Reshape(out, op.Concat(b, op.Mul(heads, d), hp, wp, axis=0))
    return op.Slice(out, op.Concat(zero, zero, axis=0), op.Concat(h, w, axis=0), op.Constant(value_ints=[2, 3]))


def function_proto() -> onnx.FunctionProto:
    """The FunctionProto to append to ``ModelProto.functions``."""
    return ESCWindowAttention.to_function_proto()
