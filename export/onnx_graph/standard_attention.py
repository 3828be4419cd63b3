"""The plugin export without the plugin: each ESCWindowAttention node replaced by its function body.

The plugin node carries its plain math as a model-local ONNX function (export/onnx_graph/function.py).
Inlined into the graph before the fp16 conversion, that body is ordinary ops the conversion types like
any other (fp16 matmuls around a float32 softmax), and TensorRT fuses the window attention into one
kernel. Left as a function, TensorRT's parser inlines it itself after the conversion, in float32, and
the attention runs unfused. The inlined nodes take the module path of the node they replace, so build
reports name their block.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from esc_deploy.common.files import atomic_output
from esc_deploy.export import plugin_contract as contract
from esc_deploy.export.onnx_graph.calibration import SCOPES_KEY
from esc_deploy.export.onnx_graph.graph_file import owned_copy, read_graph

SOURCE_KEY = "esc.standard_attention.source"  # the plugin file's sha256


def plugin_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == contract.OP_TYPE and n.domain == contract.DOMAIN]


def with_standard_attention(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose plugin nodes are their function bodies; ``model`` is left unchanged."""
    import onnx.inliner

    calls = plugin_nodes(model)
    before = {n.name for n in model.graph.node}
    inlined = onnx.inliner.inline_selected_functions(model, [(contract.DOMAIN, contract.OP_TYPE)])
    # Each call's body lands, contiguous, where the call was: the k-th run of new nodes is the k-th call's.
    runs: list[list[onnx.NodeProto]] = []
    previous_new = False
    for node in inlined.graph.node:
        new = node.name not in before
        if new and not previous_new:
            runs.append([])
        if new:
            runs[-1].append(node)
        previous_new = new
    if len(runs) != len(calls):
        raise ValueError(f"inlining {len(calls)} {contract.OP_TYPE} nodes gave {len(runs)} groups of nodes")
    for call, body in zip(calls, runs, strict=True):
        scopes = [p for p in call.metadata_props if p.key == SCOPES_KEY]
        for node in body:
            del node.metadata_props[:]
            node.metadata_props.extend(scopes)
    kept = [f for f in inlined.functions if (f.domain, f.name) != (contract.DOMAIN, contract.OP_TYPE)]
    del inlined.functions[:]
    inlined.functions.extend(kept)
    used = {n.domain for n in inlined.graph.node} | {f.domain for f in inlined.functions}
    imports = [o for o in inlined.opset_import if o.domain != contract.DOMAIN or contract.DOMAIN in used]
    del inlined.opset_import[:]
    inlined.opset_import.extend(imports)
    return inlined


def standard_attention_path(src: Path) -> Path:
    """'m.onnx' -> 'm.standard_attention.onnx', beside the plugin export."""
    return src.with_name(f"{src.stem}.standard_attention{src.suffix or '.onnx'}")


def write_standard_attention(src: Path, dst: Path) -> Path:
    """``dst``: ``src`` with standard attention, written atomically (deterministic bytes; kept when current)."""
    from esc_deploy.common.files import sha256_file

    sha = sha256_file(src)
    if dst.is_file():
        try:
            props = {p.key: p.value for p in read_graph(dst).metadata_props}
        except Exception:
            props = {}
        if props.get(SOURCE_KEY) == sha:
            return dst
    model = with_standard_attention(owned_copy(src))
    props = {p.key: p.value for p in model.metadata_props}
    onnx.helper.set_model_props(model, {**props, SOURCE_KEY: sha})
    with atomic_output(dst) as tmp:
        tmp.write_bytes(model.SerializeToString(deterministic=True))
    return dst
