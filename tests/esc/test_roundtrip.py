"""Spandrel-style round trip: build, save, detect, infer, compare hyperparameters."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

import esc
from esc.config import PRESETS, ESCConfig

GRID = [
    ESCConfig(family=family, dim=dim, pdim=pdim, kernel_size=k, n_blocks=nb, conv_blocks=cb,
              window_size=ws, num_heads=heads, scale=4 if family == "esc-real" else scale,
              exp_ratio=ratio, use_ln=use_ln or family != "esc")
    for family, (dim, pdim, heads), k, (nb, cb), ws, scale, ratio, use_ln in itertools.product(
        ["esc", "esc-fp", "esc-real"],
        [(16, 4, 2), (48, 16, 3)],
        [7, 13],
        [(1, 2), (2, 1)],
        [8, 12],
        [2, 3],
        [1.25, 2.0],
        [False, True],
    )
    if family != "esc-fp" or k == 13  # the official ESC-FP hard-codes its 13x13 padding
]  # fmt: skip


def _ident(config: ESCConfig) -> str:
    return "-".join(str(v) for v in config.to_dict().values())


@pytest.mark.parametrize("config", GRID[::7], ids=_ident)
def test_roundtrip_through_a_file(tmp_path: Path, config: ESCConfig) -> None:
    model = esc.create_model(config)
    path = tmp_path / "model.pth"
    torch.save({"params_ema": model.state_dict()}, path)
    assert esc.load_model(path).config == config


@pytest.mark.parametrize("config", GRID, ids=_ident)
def test_infer_config_over_the_grid(config: ESCConfig) -> None:
    assert esc.infer_config(esc.create_model(config).state_dict()) == config


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_presets_round_trip(name: str, scale: int) -> None:
    if name == "esc-real" and scale != 4:
        with pytest.raises(ValueError, match="upsamples by 4 only"):
            esc.build_model(name, scale=scale)
        return
    model = esc.build_model(name, scale=scale)
    assert model.config == esc.preset_config(name, scale=scale)
    assert esc.infer_config(model.state_dict()) == model.config


def test_derived_buffers_stay_out_of_the_state_dict() -> None:
    state = esc.build_model("esc-light").state_dict()
    assert not [k for k in state if "index" in k]
