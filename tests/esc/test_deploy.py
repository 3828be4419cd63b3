"""The deploy form computes the same function with export-friendly pieces."""

from __future__ import annotations

import pytest
import torch

import esc
from esc.layers import dynamic_depthwise_batch_free, dynamic_depthwise_grouped, geo_ensemble, tap_extractor
from tests.conftest import GOLDEN_DIR, GOLDEN_NAMES, load_golden


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_deploy_form_matches_original(name: str) -> None:
    golden = load_golden(name)
    model = esc.load_model(GOLDEN_DIR / f"{name}.pth", attention="naive")
    deploy = model.to_deploy()
    x = torch.cat([golden["input"], golden["input"].flip(-2)])
    with torch.no_grad():
        assert (deploy(x) - model(x)).abs().max().item() <= 1e-5


def test_deploy_folds_the_geometric_ensemble_into_a_constant() -> None:
    model = esc.load_model(GOLDEN_DIR / "light_x4.pth")
    deploy = model.to_deploy()
    assert torch.equal(deploy.plk_filter, geo_ensemble(model.plk_filter))
    assert deploy.deployed and not model.deployed  # the original is left alone


@pytest.mark.parametrize("k", [3, 5])
def test_batch_free_dynamic_conv_equals_grouped(k: int) -> None:
    torch.manual_seed(0)
    x, kernel = torch.randn(3, 5, 11, 7), torch.randn(3, 5, k, k)
    batch_free = dynamic_depthwise_batch_free(x, kernel, tap_extractor(5, k))
    assert (batch_free - dynamic_depthwise_grouped(x, kernel)).abs().max() <= 1e-6


def test_forward_does_not_change_module_state() -> None:
    model = esc.load_model(GOLDEN_DIR / "tiny_x2.pth").to_deploy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = load_golden("tiny_x2")["input"]
    with torch.no_grad():
        model(x)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(x, load_golden("tiny_x2")["input"])  # input untouched (no in-place writes)
