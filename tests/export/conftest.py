"""Fixtures for the engine tests: small real ONNX files made with onnx.helper, a stand-in plugin file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from esc.config import preset_config
from esc_deploy.export.onnx_graph.metadata import model_props


def write_onnx(path: Path, *, weight_dtype: type = np.float32) -> Path:
    """input (N, 3, H, W) -> Mul by a constant weight -> output; opset 17."""
    weight = numpy_helper.from_array(np.full((1, 3, 1, 1), 0.5, dtype=weight_dtype), name="w")
    nodes = []
    if weight_dtype is np.float16:
        nodes.append(helper.make_node("Cast", ["w"], ["w32"], to=TensorProto.FLOAT, name="cast_w"))
        nodes.append(helper.make_node("Mul", ["input", "w32"], ["y"], name="mul"))
    else:
        nodes.append(helper.make_node("Mul", ["input", "w"], ["y"], name="mul"))
    opsets = [helper.make_opsetid("", 17)]
    nodes.append(helper.make_node("Identity", ["y"], ["output"], name="out"))
    dims = ["N", 3, "H", "W"]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=opsets)
    # The facts the exporter records: ESC-light x4's config (the engine build reads it from here).
    helper.set_model_props(model, model_props(preset_config("esc-light", scale=4), "plugin"))
    onnx.save(model, str(path))
    return path


def write_fake_plugin(path: Path) -> Path:
    """Any real file stands in for the plugin where only its bytes matter (hashes, paths)."""
    path.write_bytes(b"\x7fELF not a real plugin, only hashed\n")
    return path


@pytest.fixture
def tiny_fp32_onnx(tmp_path: Path) -> Path:
    return write_onnx(tmp_path / "tiny.onnx")


@pytest.fixture
def tiny_fp16_onnx(tmp_path: Path) -> Path:
    return write_onnx(tmp_path / "tiny_fp16.onnx", weight_dtype=np.float16)


@pytest.fixture
def stand_in_plugin(tmp_path: Path) -> Path:
    return write_fake_plugin(tmp_path / "libfake_plugin.so")
