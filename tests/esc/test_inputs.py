"""Bad tensors get clear errors; any size that reflect padding allows runs."""

from __future__ import annotations

import pytest
import torch

import esc
from esc.config import ESCConfig


@pytest.fixture(scope="module")
def tiny() -> esc.ESCBase:
    config = ESCConfig(family="esc", dim=16, pdim=4, kernel_size=7, n_blocks=1, conv_blocks=1,
                       window_size=8, num_heads=2, scale=2, exp_ratio=1.25, use_ln=False)  # fmt: skip
    return esc.create_model(config, attention="naive")


@pytest.mark.parametrize("h, w", [(5, 5), (7, 9), (8, 8), (9, 17), (23, 5)])
def test_sizes_allowed_by_reflect_padding_run(tiny: esc.ESCBase, h: int, w: int) -> None:
    with torch.no_grad():
        out = tiny(torch.rand(2, 3, h, w))
    assert out.shape == (2, 3, 2 * h, 2 * w)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("h, w", [(4, 16), (16, 4), (2, 2)])
def test_too_small_input_names_minimum_side(tiny: esc.ESCBase, h: int, w: int) -> None:
    with pytest.raises(ValueError, match=r"each side must be >= 5"):
        tiny(torch.rand(1, 3, h, w))


def test_minimum_side_for_published_window() -> None:
    assert esc.build_model("esc-light").config.min_side == 17
    assert esc.build_model("esc-xl").config.min_side == 25


@pytest.mark.parametrize(
    "x, error, match",
    [
        (torch.rand(3, 16, 16), ValueError, "4-D"),
        (torch.rand(1, 1, 16, 16), ValueError, "3 \\(RGB\\) channels"),
        (torch.rand(1, 4, 16, 16), ValueError, "got 4"),
        (torch.randint(0, 255, (1, 3, 16, 16), dtype=torch.uint8), TypeError, "floating-point"),
    ],
)
def test_bad_tensors_get_clear_errors(tiny: esc.ESCBase, x: torch.Tensor, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        tiny(x)
