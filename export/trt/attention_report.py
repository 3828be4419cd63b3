"""How each block's window attention came out in a built engine: plugin layer, fused kernel, or unfused.

Read after every build from the builder's DETAILED layer report (trt/layer_log.py): every engine layer
lists the ONNX nodes it computes and the kernel (tactic) chosen. Each block's attention is found by
one ONNX node, its anchor: the ESCWindowAttention node (plugin export), the opset-23 ``Attention`` node,
or the ``Softmax`` of the standard-op attention (native export, or the plugin's inlined function
body). The engine layer holding the anchor says the implementation: a plugin layer, one of TensorRT's
fused attention kernels (``_gemm_mha_v2_...``: q.k^T, the bias, softmax and .v in one kernel), or
anything else, which is unfused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from esc_deploy.export import plugin_contract as contract
from esc_deploy.export.onnx_graph.graph_file import read_graph
from esc_deploy.export.trt.layer_log import EngineLayer

Implementation = Literal["plugin", "fused", "unfused", "not found"]

PLUGIN_LAYER_KIND = "custom_layer"
_FUSED_ATTENTION_TACTIC = re.compile(r"(^|_)f?mha(_|$)")  # '_gemm_mha_v2_0x...' (TensorRT for RTX 1.7)


@dataclass(frozen=True)
class AttentionBlock:
    """One block's attention in the engine."""

    block: str  # the module path, 'blocks.0'
    onnx_node: str  # the anchor node
    implementation: Implementation
    layer: str  # the engine layer holding the anchor ('' when not found)
    tactic: str  # its kernel

    @property
    def fused(self) -> bool:
        """Plugin layers count as fused: the plugin computes the whole attention in one kernel."""
        return self.implementation in ("plugin", "fused")


def attention_anchors(onnx_path: Path) -> list[tuple[str, str]]:
    """[(block, anchor node name)] in graph order; block from the node's module path, else 'attention k'."""
    from esc_deploy.export.onnx_graph.calibration import node_scopes

    nodes = list(read_graph(onnx_path).graph.node)
    for kinds in ({(contract.DOMAIN, contract.OP_TYPE)}, {("", "Attention"), ("ai.onnx", "Attention")}):
        anchors = [n for n in nodes if (n.domain, n.op_type) in kinds]
        if anchors:
            break
    else:
        anchors = [n for n in nodes if n.op_type == "Softmax" and n.domain in ("", "ai.onnx")]
    out = []
    for index, node in enumerate(anchors):
        blocks = [s for s in node_scopes(node) if re.fullmatch(r"blocks\.\d+", s)]
        out.append((blocks[0] if blocks else f"attention {index}", node.name))
    return out


def classify(anchors: Sequence[tuple[str, str]], layers: Sequence[EngineLayer]) -> tuple[AttentionBlock, ...]:
    by_node = {node: layer for layer in layers for node in layer.onnx_nodes}
    out = []
    for block, node in anchors:
        layer = by_node.get(node)
        if layer is None:
            out.append(AttentionBlock(block, node, "not found", "", ""))
            continue
        if layer.kind == PLUGIN_LAYER_KIND:
            kind: Implementation = "plugin"
        elif _FUSED_ATTENTION_TACTIC.search(layer.tactic):
            kind = "fused"
        else:
            kind = "unfused"
        out.append(AttentionBlock(block, node, kind, layer.name, layer.tactic))
    return tuple(out)


def attention_blocks(onnx_path: Path, log_path: Path) -> tuple[AttentionBlock, ...]:
    """Each block's attention in the engine whose build wrote ``log_path`` from ``onnx_path``."""
    from esc_deploy.export.trt.layer_log import engine_layers

    with open(log_path, encoding="utf-8") as log:
        layers = engine_layers(log)
    return classify(attention_anchors(onnx_path), layers)


def unfused_warning(blocks: Sequence[AttentionBlock]) -> str | None:
    """One line naming the blocks whose attention is not one kernel; None when every block's is."""
    slow = [b for b in blocks if not b.fused]
    if not slow:
        return None
    names = ", ".join(f"{b.block} ({b.implementation})" for b in slow)
    return (
        f"warning: attention of {len(slow)} of {len(blocks)} blocks is not one fused kernel: {names}; "
        "TensorRT fuses window attention in fp16 (--fp16), or use the plugin (--attention plugin)"
    )
