"""The plugin-layer check: every ESCWindowAttention node of a real export must become a plugin layer."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from esc_deploy.export import plugin_contract
from esc_deploy.export.onnx_graph.metadata import read_model_config
from esc_deploy.export.trt.env import MissingDependencyError
from esc_deploy.export.trt.plugin import check_plugin_layers, esc_node_names, unplugged_nodes


@pytest.mark.xdist_group("tiny_x2")
def test_esc_node_names_of_a_real_export(exports, tmp_path: Path) -> None:
    """One node per block of the official-format checkpoint, in graph order; none in the native graph."""
    for attention in ("plugin", "native"):
        onnx.save(exports.proto("tiny_x2", attention), str(tmp_path / f"{attention}.onnx"))
    names = esc_node_names(tmp_path / "plugin.onnx")
    assert len(names) == read_model_config(tmp_path / "plugin.onnx").n_blocks >= 1
    assert len(set(names)) == len(names) and all(names)
    assert esc_node_names(tmp_path / "native.onnx") == []


@pytest.mark.parametrize(
    ("nodes", "layers", "missing"),
    [
        (["a0", "a1"], ["a0", "a1"], []),  # every node became a plugin layer of its name
        (["a0", "a1"], [], ["a0", "a1"]),  # function bodies: no plugin layer at all
        (["a0", "a1"], ["a1"], ["a0"]),
        (["", ""], ["ESCWindowAttention_0", "ESCWindowAttention_1"], []),  # unnamed nodes: counted
        (["a0", "a1"], ["a0", "renamed"], []),
        (["a0", "a1", "a2"], ["a2"], ["a0", "a1"]),
        ([], ["other_plugin"], []),
    ],
)
def test_unplugged_nodes(nodes: list[str], layers: list[str], missing: list[str]) -> None:
    assert unplugged_nodes(nodes, layers) == missing


def test_check_plugin_layers_message(tmp_path: Path) -> None:
    check_plugin_layers(["a0"], ["a0"], tmp_path / "lib.so")
    with pytest.raises(MissingDependencyError) as info:
        check_plugin_layers(["a0", "a1", "a2", "a3"], [], tmp_path / "lib.so")
    message = str(info.value)
    assert message.startswith(f"4 of 4 {plugin_contract.OP_TYPE} nodes ('a0', 'a1', 'a2', ...) were built")
    assert "from their ONNX function body instead of the plugin" in message
    assert f"{plugin_contract.OP_TYPE} v{plugin_contract.PLUGIN_VERSION}" in message and "\n" not in message
