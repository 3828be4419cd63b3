"""Checkpoints in every supported wrapping load; anything else fails with a message that helps."""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import esc
from esc import CheckpointError
from tests.conftest import GOLDEN_DIR, load_golden


@pytest.fixture(scope="module")
def official_state() -> dict[str, torch.Tensor]:
    return torch.load(GOLDEN_DIR / "tiny_x2.pth", weights_only=True)["params_ema"]


def _check_loads_tiny(checkpoint: object) -> None:
    golden = load_golden("tiny_x2")
    model = esc.load_model(checkpoint, attention="naive")  # type: ignore[arg-type]
    assert not model.training
    with torch.no_grad():
        assert (model(golden["input"]) - golden["output"]).abs().max().item() <= 1e-4


@pytest.mark.parametrize("wrapper", ["params_ema", "params", "state_dict", None])
@pytest.mark.parametrize("suffix", [".pth", ".pt"])
def test_wrapped_checkpoints_load(tmp_path: Path, official_state: dict, wrapper: str | None, suffix: str) -> None:
    path = tmp_path / f"model{suffix}"
    torch.save({wrapper: official_state} if wrapper else official_state, path)
    _check_loads_tiny(path)


def test_module_prefix_and_in_memory_dict(official_state: dict) -> None:
    _check_loads_tiny({"params": {f"module.{k}": v for k, v in official_state.items()}})


def test_safetensors(tmp_path: Path, official_state: dict) -> None:
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in official_state.items()}, str(path))
    _check_loads_tiny(path)


def test_params_ema_preferred_over_params(tmp_path: Path, official_state: dict) -> None:
    noisy = {k: v + 1 for k, v in official_state.items()}
    path = tmp_path / "both.pth"
    torch.save({"params": noisy, "params_ema": official_state}, path)
    _check_loads_tiny(path)


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    """An arbitrary pickled object (here argparse.Namespace) is never unpickled."""
    path = tmp_path / "evil.pth"
    with path.open("wb") as f:
        pickle.dump({"params_ema": argparse.Namespace(x=1)}, f)
    with pytest.raises(CheckpointError, match="cannot read"):
        esc.load_model(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        esc.load_model(tmp_path / "nope.pth")


def test_unrecognised_state_dict_names_expected_keys() -> None:
    state = {"conv_first.weight": torch.zeros(64, 3, 3, 3), "body.0.weight": torch.zeros(64, 64, 3, 3)}
    with pytest.raises(CheckpointError, match=r"expected 'plk_filter'.*found keys: conv_first.weight"):
        esc.load_model(state)


def test_wrong_shape_is_reported(official_state: dict) -> None:
    state = dict(official_state)
    state["to_img.weight"] = torch.zeros(50, 16, 3, 3)
    with pytest.raises(CheckpointError, match=r"expected to_img\.weight with 3\*s\^2 rows, found 50"):
        esc.load_model(state)


def test_missing_tensor_is_reported(official_state: dict) -> None:
    state = {k: v for k, v in official_state.items() if not k.startswith("blocks.0.attn.to_out")}
    with pytest.raises(CheckpointError, match=r"missing blocks\.0\.attn\.to_out\.weight"):
        esc.load_model(state)


def test_dysample_real_is_refused_clearly() -> None:
    state = torch.load(GOLDEN_DIR / "real_x4.pth", weights_only=True)["params_ema"]
    state["to_img.offset.weight"] = torch.zeros(128, 64, 1, 1)
    with pytest.raises(CheckpointError, match="DySample"):
        esc.load_model(state)


def test_not_a_file_of_tensors(tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="holds a list"):
        esc.load_model(path)
