"""The fused window-attention kernel (engines/plugin) against the float64 reference, on a CUDA device."""

from __future__ import annotations

import pytest
import torch

from tests.engines.window_reference import random_inputs, reference_window_attention

# (batch, channels C, heads, height, width, window): odd sizes, batch > 1, windows 8/32/48 (and the 9 and 64
# edges: a token count that is not a multiple of the key tile, and the largest window), head size 16 and 32.
SHAPES = [
    (2, 32, 2, 13, 21, 8),  # d=16, batch 2, padding on both sides
    (1, 64, 2, 37, 29, 8),  # d=32
    (3, 32, 1, 16, 24, 8),  # d=32, no padding, batch 3
    (1, 64, 4, 45, 70, 32),  # d=16, ESC's window
    (2, 64, 2, 33, 40, 32),  # d=32, batch 2
    (1, 64, 2, 50, 33, 48),  # d=32, ESC-XL's window
    (1, 32, 2, 20, 14, 9),  # d=16, N = 81 tokens
    (1, 32, 2, 70, 40, 64),  # d=16, N = 4096 tokens
    (1, 16, 1, 20, 30, 24),  # d=16, 576 tokens: 6 warps per block in the tensor-core body
]


@pytest.mark.cuda
@pytest.mark.nvcc
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "b{}_c{}_h{}_{}x{}_w{}".format(*s))
def test_fp32_matches_reference(shape: tuple[int, int, int, int, int, int]) -> None:
    from esc.fused_attention import launch_window_attention

    b, c, heads, h, w, ws = shape
    qkv, table = random_inputs(shape, torch.float32, seed=sum(shape))
    out = torch.full((b, c, h, w), float("nan"), device="cuda")  # every element must be written
    launch_window_attention(qkv, table, out, heads, ws)
    torch.cuda.synchronize()
    expected = reference_window_attention(qkv, table, heads, ws)
    assert not out.isnan().any()
    error = (out.double() - expected).abs().max().item()
    assert error <= 1e-5, f"max abs error {error:.3g} > 1e-5"


@pytest.mark.cuda
@pytest.mark.nvcc
@pytest.mark.parametrize("table_dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "b{}_c{}_h{}_{}x{}_w{}".format(*s))
def test_fp16_matches_reference(shape: tuple[int, int, int, int, int, int], table_dtype: torch.dtype) -> None:
    from esc.fused_attention import launch_window_attention

    b, c, heads, h, w, ws = shape
    qkv, table = random_inputs(shape, torch.float16, seed=sum(shape) + 1)
    table = table.to(table_dtype)
    out = torch.full((b, c, h, w), float("nan"), device="cuda", dtype=torch.float16)
    launch_window_attention(qkv, table, out, heads, ws)
    torch.cuda.synchronize()
    expected = reference_window_attention(qkv, table, heads, ws)
    assert not out.isnan().any()
    relative = ((out.double() - expected).norm() / expected.norm()).item()
    assert relative <= 5e-3, f"relative L2 error {relative:.3g} > 5e-3"
    error = (out.double() - expected).abs().max().item()  # a few wrong pixels cannot hide in the norm
    assert error <= 5e-3, f"max abs error {error:.3g} > 5e-3"


@pytest.mark.cuda
@pytest.mark.nvcc
def test_torch_op_matches_launcher_and_traces() -> None:
    """The registered op (the model's ``fused`` backend) agrees with the launcher, also compiled."""
    from esc.fused_attention import fused_window_attention, launch_window_attention

    shape = (2, 32, 2, 13, 21, 8)
    qkv, table = random_inputs(shape, torch.float16, seed=7)
    expected = torch.empty(2, 32, 13, 21, device="cuda", dtype=torch.float16)
    launch_window_attention(qkv, table, expected, 2, 8)
    out = fused_window_attention(qkv, table, 2, 8)
    compiled = torch.compile(fused_window_attention, fullgraph=True)(qkv, table, 2, 8)
    assert torch.equal(out, expected)
    assert torch.equal(compiled, expected)


def test_fake_shape_and_argument_errors() -> None:
    """Shape inference (meta tensors, as in tracing) and input checks run without CUDA and without nvcc."""
    from esc.fused_attention import fused_window_attention

    qkv = torch.empty(2, 96, 13, 21, device="meta")
    table = torch.empty(2, 15 * 15, device="meta")
    assert fused_window_attention(qkv, table, 2, 8).shape == (2, 32, 13, 21)
    with pytest.raises(ValueError, match="head size"):
        fused_window_attention(torch.empty(1, 90, 13, 21, device="meta"), table, 2, 8)
    with pytest.raises(ValueError, match="table of shape"):
        fused_window_attention(qkv, torch.empty(2, 100, device="meta"), 2, 8)
    with pytest.raises(ValueError, match="reflect padding"):
        fused_window_attention(torch.empty(1, 96, 3, 21, device="meta"), table, 2, 8)
    with pytest.raises(ValueError, match="window_size"):
        fused_window_attention(qkv, table, 2, 4)
