"""The built engine's layers, read from the build log: TensorRT's DETAILED "Layers:" report.

With `ProfilingVerbosity.DETAILED` the builder logs, at VERBOSE level, one line per engine layer:
its kind, its input, constant and output tensors with their data types, and the ONNX node it came
from. That is the layer information the engine inspector gives, available without deserializing the
engine (TensorRT for RTX builds on machines without a GPU, where nothing can be deserialized).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_LAYER = re.compile(r"^Name: (?P<name>[^,]+), LayerType: (?P<kind>[^,]+), Inputs: \[(?P<rest>.*)$")
_TENSOR = re.compile(r"\{ Name: (?P<name>[^,]+), Dimensions: \[[^\]]*\].*?Datatype: (?P<dtype>\w+)")
_ONNX_LAYER = re.compile(r"\[ONNX Layer: (?P<names>[^\]]+)\]")
_TACTIC = re.compile(r"^\s*(?P<tactic>[^,]*)")


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # 'Half', 'Float', 'Int32', ...


@dataclass(frozen=True)
class EngineLayer:
    name: str
    kind: str  # 'correlation' (convolution), 'custom_layer' (plugin), 'kgen', ...
    inputs: tuple[Tensor, ...]
    constants: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    onnx_nodes: tuple[str, ...]  # every ONNX node the layer computes (a fused kernel lists several)
    tactic: str = ""  # the kernel TensorRT chose, e.g. '_gemm_mha_v2_0x...' for fused attention


def _tensors(text: str) -> tuple[Tensor, ...]:
    return tuple(Tensor(m["name"].strip(), m["dtype"]) for m in _TENSOR.finditer(text))


def engine_layers(log_lines: Iterable[str]) -> list[EngineLayer]:
    """Every layer of the last "Layers:" report in the log (a log line may carry a '[VERBOSE] ' prefix)."""
    layers: list[EngineLayer] = []
    for line in log_lines:
        text = line.split("] ", 1)[1] if line.startswith("[") and "] " in line else line
        if text.strip() == "Layers:":
            layers = []  # a later report (another build in one log) replaces an earlier one
            continue
        match = _LAYER.match(text)
        if match is None:
            continue
        rest = match["rest"]
        inputs, _, rest = rest.partition("], Constants: [")
        constants, _, rest = rest.partition("], Outputs: [")
        outputs, _, tail = rest.partition("], TacticName:")
        tactic = _TACTIC.match(tail)
        layers.append(
            EngineLayer(
                name=match["name"],
                kind=match["kind"],
                inputs=_tensors(inputs),
                constants=_tensors(constants),
                outputs=_tensors(outputs),
                onnx_nodes=tuple(n.strip() for m in _ONNX_LAYER.finditer(tail) for n in m["names"].split(",")),
                tactic=tactic["tactic"].strip() if tactic else "",
            )
        )
    return layers
