"""The exported graph keeps the plugin contract and stays clean, small and dynamic."""

from __future__ import annotations

import onnx
import pytest
from onnx import numpy_helper

from esc_deploy.export import plugin_contract as contract
from tests.conftest import ExportCache


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


@pytest.mark.parametrize("name", ["light_x4", "fp_x4", "real_x4"])
def test_one_plugin_node_per_block_with_the_contract(exports: ExportCache, name: str) -> None:
    proto = exports.proto(name, "plugin")
    config = exports.model(name).config
    nodes = [n for n in proto.graph.node if n.op_type == contract.OP_TYPE]
    assert len(nodes) == config.n_blocks
    producers = {o: n for n in proto.graph.node for o in n.output}
    initializers = {i.name: i for i in proto.graph.initializer}
    for node in nodes:
        assert node.domain == contract.DOMAIN
        assert _attrs(node) == {
            contract.ATTR_NUM_HEADS: config.num_heads,
            contract.ATTR_WINDOW_SIZE: config.window_size,
            contract.ATTR_PLUGIN_VERSION: contract.PLUGIN_VERSION.encode(),
            contract.ATTR_PLUGIN_NAMESPACE: contract.PLUGIN_NAMESPACE.encode(),
        }
        qkv, table = node.input
        assert producers[qkv].op_type == "Conv"  # the block's 1x1 to_qkv, unpadded
        assert list(initializers[table].dims) == [config.num_heads, (2 * config.window_size - 1) ** 2]
    assert (contract.DOMAIN, 1) in {(o.domain, o.version) for o in proto.opset_import}
    (function,) = proto.functions
    assert (function.domain, function.name) == (contract.DOMAIN, contract.OP_TYPE)
    assert {*function.attribute} == {
        contract.ATTR_NUM_HEADS, contract.ATTR_WINDOW_SIZE, contract.ATTR_PLUGIN_VERSION, contract.ATTR_PLUGIN_NAMESPACE
    }  # fmt: skip


@pytest.mark.xdist_group("light_x4")
@pytest.mark.parametrize("attention", ["plugin", "native"])
def test_graph_is_clean_checked_and_small(exports: ExportCache, attention: str) -> None:
    proto = exports.proto("light_x4", attention)
    ops = {n.op_type for n in proto.graph.node}
    assert not ops & {"ScatterND", "ScatterElements", "If", "Loop"}
    onnx.checker.check_model(proto, full_check=True)
    weight_bytes = sum(p.numel() * 4 for p in exports.model("light_x4").parameters())
    size = len(proto.SerializeToString())
    assert size <= 1.2 * weight_bytes + 1_000_000, (size, weight_bytes)
    assert all(i.data_location != onnx.TensorProto.EXTERNAL for i in proto.graph.initializer)
    # the (heads, N, N) bias is never stored: no initializer larger than the biggest weight
    largest = max(numpy_helper.to_array(i).size for i in proto.graph.initializer)
    assert largest <= max(p.numel() for p in exports.model("light_x4").parameters())


@pytest.mark.xdist_group("light_x4")
@pytest.mark.parametrize("attention", ["plugin", "native"])
def test_batch_height_width_are_dynamic_and_shapes_inferred(exports: ExportCache, attention: str) -> None:
    proto = exports.proto("light_x4", attention)
    (inp,), (out,) = proto.graph.input, proto.graph.output
    in_dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    assert in_dims == ["batch", 3, "height", "width"]
    assert out_dims == ["batch", 3, "4*height", "4*width"]
    assert len(proto.graph.value_info) > len(proto.graph.node) // 2  # intermediate shapes are recorded


@pytest.mark.xdist_group("light_x4")
def test_geometric_reparameterisation_is_folded(exports: ExportCache) -> None:
    import esc.layers

    model = exports.model("light_x4")
    folded = esc.layers.geo_ensemble(model.plk_filter).detach().numpy()
    arrays = {i.name: numpy_helper.to_array(i) for i in exports.proto("light_x4").graph.initializer}
    assert any(a.shape == folded.shape and (a == folded).all() for a in arrays.values())
    assert not any(a.shape == folded.shape and (a == model.plk_filter.detach().numpy()).all() for a in arrays.values())


@pytest.mark.xdist_group("light_x4")
def test_native_attention_is_in_the_fusable_form(exports: ExportCache) -> None:
    """Q scaled before Q.K^T, an additive bias, Softmax, then .V: the pattern TensorRT fuses."""
    proto = exports.proto("light_x4", "native")
    producers = {o: n for n in proto.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    softmaxes = [n for n in proto.graph.node if n.op_type == "Softmax"]
    assert len(softmaxes) == 3
    for softmax in softmaxes:
        add = producers[softmax.input[0]]
        assert add.op_type == "Add"
        matmul = next(producers[i] for i in add.input if i in producers and producers[i].op_type == "MatMul")
        assert producers[matmul.input[0]].op_type == "Mul"  # scaled Q
        assert [c.op_type for c in consumers[softmax.output[0]]] == ["MatMul"]  # .V
