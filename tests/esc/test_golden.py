"""The model reproduces the official code's outputs (tests/data/golden, official commit e7e6938)."""

from __future__ import annotations

import pytest
import torch

import esc
from tests.conftest import GOLDEN_DIR, GOLDEN_NAMES, load_golden

TOLERANCE = 1e-4  # float32; a faithful re-implementation lands near 1e-5 or below


@pytest.mark.parametrize("attention", ["naive", "sdpa"])
@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_golden_output(name: str, attention: str) -> None:
    golden = load_golden(name)
    model = esc.load_model(GOLDEN_DIR / f"{name}.pth", attention=attention)
    with torch.no_grad():
        out = model(golden["input"])
    assert out.shape == golden["output"].shape
    assert (out - golden["output"]).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_inferred_config_matches_official_kwargs(name: str) -> None:
    golden = load_golden(name)
    config = esc.load_model(GOLDEN_DIR / f"{name}.pth").config
    family = {"ESC": "esc", "ESCFP": "esc-fp", "ESCReal": "esc-real"}[golden["arch"]]
    kwargs = golden["kwargs"]
    assert config.family == family
    assert config.dim == kwargs["dim"]
    assert config.pdim == kwargs["pdim"]
    assert config.kernel_size == kwargs["kernel_size"]
    assert config.n_blocks == kwargs["n_blocks"]
    assert config.conv_blocks == kwargs["conv_blocks"]
    assert config.window_size == kwargs["window_size"]
    assert config.num_heads == kwargs["num_heads"]
    assert config.scale == kwargs["upscaling_factor"]
    assert config.exp_ratio == pytest.approx(kwargs["exp_ratio"])
    assert config.use_ln == (family != "esc" or kwargs.get("use_ln", False))


def test_any_batch_matches_per_image_outputs() -> None:
    """The official eval path handles batch 1 only; ours stacks images freely."""
    golden = load_golden("fp_x4")
    model = esc.load_model(GOLDEN_DIR / "fp_x4.pth", attention="sdpa")
    x = golden["input"]
    batch = torch.cat([x, x.flip(-1), x * 0.5])
    with torch.no_grad():
        out = model(batch)
        singles = [model(batch[i : i + 1]) for i in range(3)]
    assert (out[:1] - golden["output"]).abs().max().item() <= TOLERANCE
    for i, single in enumerate(singles):
        assert (out[i : i + 1] - single).abs().max().item() <= 1e-5


def test_golden_batch_two_set_is_batch_two() -> None:
    assert load_golden("tiny_x2_b2")["input"].shape[0] == 2
