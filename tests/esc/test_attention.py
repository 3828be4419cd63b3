"""Every attention backend computes the naive reference function."""

from __future__ import annotations

import pytest
import torch

import esc
from esc.attention import expand_bias, get_attention, relative_position_indices
from esc.layers import WindowAttention
from tests.conftest import GOLDEN_DIR, load_golden


def _official_bias(table: torch.Tensor, window: int) -> torch.Tensor:
    """The official create_table_idxs enumeration, written out loop by loop."""
    heads = table.shape[0]
    n = window * window
    bias = torch.empty(heads, n, n)
    for i in range(n):
        for j in range(n):
            rel_h = j // window - i // window + window - 1
            rel_w = j % window - i % window + window - 1
            bias[:, i, j] = table[:, rel_h * (2 * window - 1) + rel_w]
    return bias


@pytest.mark.parametrize("window", [2, 5, 8])
def test_expanded_bias_matches_official_enumeration(window: int) -> None:
    table = torch.randn(3, (2 * window - 1) ** 2)
    assert torch.equal(expand_bias(table, *relative_position_indices(window)), _official_bias(table, window))


def _module(dim: int, heads: int, window: int, attention: str) -> WindowAttention:
    torch.manual_seed(0)
    module = WindowAttention(dim, window, heads, attention=attention)
    with torch.no_grad():
        module.relative_position_bias.normal_(0, 0.5)
    return module


@pytest.mark.parametrize("shape", [(1, 16, 16), (2, 13, 21), (3, 8, 5), (1, 40, 33)])
@pytest.mark.parametrize("heads, dim", [(2, 32), (4, 64)])
def test_sdpa_matches_naive(shape: tuple[int, int, int], heads: int, dim: int) -> None:
    b, h, w = shape
    module = _module(dim, heads, 8, "naive")
    qkv = torch.randn(b, 3 * dim, h, w)
    ref = get_attention("naive")(module, qkv)
    out = get_attention("sdpa")(module, qkv)
    assert out.shape == (b, dim, h, w)
    assert (out - ref).abs().max().item() <= 1e-5


def test_flex_on_cpu_is_a_clear_error() -> None:
    module = _module(32, 2, 8, "flex")
    with pytest.raises(RuntimeError, match="'flex' needs a CUDA device"):
        module(torch.randn(1, 32, 16, 16))


def test_unknown_attention_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown attention 'fast'"):
        esc.build_model("esc-light", attention="fast")


def test_default_attention_follows_device() -> None:
    model = esc.build_model("esc-light")
    assert model.attention == "auto"
    from esc.attention import default_attention

    assert default_attention(torch.device("cpu")) == "sdpa"
    assert default_attention(torch.device("cuda")) == "flex"


@pytest.mark.cuda
@pytest.mark.parametrize("attention", ["flex", "sdpa", "fused"])
@pytest.mark.parametrize("window, shape", [(8, (2, 13, 21)), (32, (1, 40, 52)), (48, (1, 50, 61))])
def test_cuda_backends_match_naive(attention: str, window: int, shape: tuple[int, int, int]) -> None:
    b, h, w = shape
    module = _module(64, 4, window, "naive").cuda()
    qkv = torch.randn(b, 192, h, w, device="cuda")
    ref = get_attention("naive")(module, qkv)
    out = get_attention(attention)(module, qkv)
    assert (out - ref).abs().max().item() <= 1e-5


@pytest.fixture
def no_tf32() -> object:
    """cuDNN convolutions default to TF32, which alone moves outputs by ~1e-3."""
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = previous


@pytest.mark.cuda
@pytest.mark.parametrize("attention", ["flex", "fused"])
def test_whole_model_on_cuda_matches_naive(attention: str, no_tf32: object) -> None:
    golden = load_golden("light_x4")
    model = esc.load_model(GOLDEN_DIR / "light_x4.pth", device="cuda", attention="naive")
    x = golden["input"].cuda()
    with torch.no_grad():
        ref = model(x)
        model.set_attention(attention)
        out = model(x)
    assert (out - ref).abs().max().item() <= 1e-4
    assert (out.cpu() - golden["output"]).abs().max().item() <= 1e-4


@pytest.mark.cuda
def test_whole_model_fp16_fused_matches_fp32(no_tf32: object) -> None:
    """fp16 runs the kernel's tensor-core body (window 32); fp_x4, since light_x4's activations overflow fp16."""
    golden = load_golden("fp_x4")
    model = esc.load_model(GOLDEN_DIR / "fp_x4.pth", device="cuda", attention="naive")
    x = golden["input"].cuda()
    with torch.no_grad():
        ref = model(x).double()
        model.half().set_attention("fused")
        out = model(x.half()).double()
    assert out.isfinite().all()
    relative = ((out - ref).norm() / ref.norm()).item()
    assert relative <= 5e-3, f"relative L2 error {relative:.3g} > 5e-3"
