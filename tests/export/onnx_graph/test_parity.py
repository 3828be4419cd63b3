"""ONNX Runtime runs the exported files and matches the PyTorch float32 model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esc_deploy.export.onnx_graph.ort_session import ort_session
from tests.conftest import GOLDEN_NAMES, ExportCache, load_golden

TOLERANCE = 1e-4  # float32, both graph forms


def _shapes(name: str) -> list[torch.Tensor]:
    """The golden input, a batch of 2, and a crop whose sides are not window multiples."""
    x = load_golden(name)["input"]
    crop = x[..., : x.shape[-2] - 3, : x.shape[-1] - 1]
    return [x, torch.cat([x, x.flip(-1)]), crop]


@pytest.mark.parametrize("attention", ["plugin", "native"])
@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_onnxruntime_matches_torch(exports: ExportCache, name: str, attention: str) -> None:
    model = exports.model(name)
    session = ort_session(exports.proto(name, attention))
    window = model.config.window_size
    shapes = _shapes(name)
    assert any(x.shape[-1] % window or x.shape[-2] % window for x in shapes)
    assert any(x.shape[0] == 2 for x in shapes)
    for x in shapes:
        with torch.no_grad():
            expected = model(x).numpy()
        (got,) = session.run(None, {"input": x.numpy()})
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= TOLERANCE, tuple(x.shape)


@pytest.mark.xdist_group("tiny_x2_b2")
def test_attention_node_at_opset_23(exports: ExportCache) -> None:
    proto = exports.proto("tiny_x2_b2", "native", opset=23)
    assert sum(n.op_type == "Attention" for n in proto.graph.node) == 1  # one block
    model = exports.model("tiny_x2_b2")
    x = load_golden("tiny_x2_b2")["input"]
    session = ort_session(proto)
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.abs(session.run(None, {"input": x.numpy()})[0] - expected).max() <= TOLERANCE
