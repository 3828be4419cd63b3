"""Who computes the window attention in an engine: the ESCWindowAttention plugin, or TensorRT itself.

``--attention plugin`` needs the plugin library (built from engines/plugin against TensorRT headers).
``--attention tensorrt`` needs nothing more: TensorRT's builder fuses ESC's window attention (q.k^T,
the position bias, softmax, .v) into one kernel of its own in fp16; from the plugin export, each
plugin node is first replaced by its function body (export/onnx_graph/standard_attention.py).
``--attention auto`` takes the plugin where its library is found, otherwise TensorRT, and says which.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from esc_deploy.export.onnx_graph.graph_file import read_graph
from esc_deploy.export.trt.env import MissingDependencyError
from esc_deploy.export.trt.options import EngineOptions
from esc_deploy.export.trt.plugin import esc_node_names, require_plugin_file

AttentionPath = Literal["plugin", "tensorrt"]


@dataclass(frozen=True)
class AttentionChoice:
    path: AttentionPath
    reason: str
    plugin_nodes: int  # ESCWindowAttention nodes in the ONNX as given

    def line(self) -> str:
        return f"attention: {self.path} ({self.reason})"

    def effective(self, options: EngineOptions) -> EngineOptions:
        """The options the build runs with: no plugin library on the TensorRT path."""
        return options if self.path == "plugin" else dataclasses.replace(options, plugin=None)


def choose_attention(options: EngineOptions) -> AttentionChoice:
    """The path for ``options`` (the ONNX must exist); MissingDependencyError / ValueError, one line, where
    ``--attention plugin`` cannot be met."""
    nodes = len(esc_node_names(options.onnx))
    library = options.plugin
    if options.attention == "plugin":
        if library is None:
            raise MissingDependencyError("--attention plugin needs the plugin library: pass --plugin PATH")
        require_plugin_file(library)
        if not nodes:
            raise ValueError(
                f"--attention plugin: {options.onnx} has no ESCWindowAttention node (a native export); export with "
                "`python export/to_onnx.py --attention plugin`, or build with --attention tensorrt"
            )
        return AttentionChoice("plugin", f"asked for; plugin library {library}", nodes)
    standard = "TensorRT fuses the window attention into its own kernel" + (
        "; the plugin nodes become their standard-op bodies" if nodes else ""
    )
    if options.attention == "tensorrt":
        return AttentionChoice("tensorrt", f"asked for; {standard}", nodes)
    if not nodes:
        return AttentionChoice("tensorrt", f"auto: the ONNX has no plugin node; {standard}", nodes)
    if library is not None and library.is_file():
        return AttentionChoice("plugin", f"auto: plugin library {library} found", nodes)
    missing = "--no-plugin given" if library is None else f"no plugin library at {library}"
    return AttentionChoice("tensorrt", f"auto: {missing}; {standard}", nodes)


def float32_attention_nodes(onnx_path: Path) -> list[str]:
    """Opset-23 ``Attention`` nodes whose query is float32: TensorRT has no kernel for them and cannot
    decompose them (the parser maps the op to IAttention), so their build would fail deep in the builder."""
    import onnx

    model = read_graph(onnx_path)
    nodes = [n for n in model.graph.node if n.op_type == "Attention" and n.domain in ("", "ai.onnx")]
    if not nodes:
        return []
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.value_info, *graph.output]}
    types |= {init.name: init.data_type for init in graph.initializer}
    return [n.name for n in nodes if types.get(n.input[0]) == onnx.TensorProto.FLOAT]


def check_attention_types(onnx_path: Path, runtime_label: str) -> None:
    """ValueError, one line, for a float32 opset-23 Attention node (see ``float32_attention_nodes``)."""
    names = float32_attention_nodes(onnx_path)
    if names:
        raise ValueError(
            f"{runtime_label} has no float32 kernel for the ONNX Attention op and cannot decompose it "
            f"({len(names)} float32 Attention nodes in {onnx_path}, first {names[0]}): build with --fp16, "
            "or export with --opset 18 (standard ops, which build in float32 unfused)"
        )
