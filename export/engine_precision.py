"""Precision per runtime: weak typing with fp32 islands on TensorRT 10.x, strongly typed elsewhere.

TensorRT 10.x: `--fp16` sets BuilderFlag.FP16 and pins normalization and softmax layers to fp32
(their reductions over 60+ channels or 256 window tokens lose too much in fp16), enforced by
BuilderFlag.OBEY_PRECISION_CONSTRAINTS. TensorRT 11.x and TensorRT for RTX have none of that: the
network is strongly typed, so fp16 must already be in the ONNX, which the export step's
mixed-precision conversion writes.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from export.engine_env import TrtRuntime
from export.engine_options import EngineOptions, Precision, fp16_onnx_path


class NetworkTyping(str, Enum):
    WEAK = "weak"  # TensorRT picks layer precisions within the builder flags (10.x)
    STRONG = "strong"  # tensor types follow the ONNX exactly (11.x, TensorRT for RTX)


def network_typing(runtime: TrtRuntime) -> NetworkTyping:
    return NetworkTyping.STRONG if runtime.strongly_typed_only else NetworkTyping.WEAK


def is_fp16_mixed(path: Path) -> bool:
    """True when the ONNX already holds fp16 weights (initializers or Constant nodes of type FLOAT16)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    fp16 = onnx.TensorProto.FLOAT16
    if any(init.data_type == fp16 for init in model.graph.initializer):
        return True
    return any(
        attr.name == "value" and attr.t.data_type == fp16
        for node in model.graph.node
        if node.op_type == "Constant"
        for attr in node.attribute
    )


def needs_fp16_onnx(options: EngineOptions, typing: NetworkTyping) -> bool:
    return options.precision is Precision.FP16 and typing is NetworkTyping.STRONG


def planned_onnx(options: EngineOptions, typing: NetworkTyping) -> Path:
    """The ONNX the build will parse, without writing anything (for --print-trtexec)."""
    if not needs_fp16_onnx(options, typing):
        return options.onnx
    if options.onnx.is_file() and is_fp16_mixed(options.onnx):
        return options.onnx
    return fp16_onnx_path(options.onnx)


def prepare_onnx(options: EngineOptions, typing: NetworkTyping) -> Path:
    """The ONNX to parse; strongly typed with --fp16, converts an fp32 file to fp16 mixed precision first."""
    if not needs_fp16_onnx(options, typing) or is_fp16_mixed(options.onnx):
        return options.onnx
    from export.onnx_fp16 import convert_to_mixed_fp16  # owned by the export step

    return convert_to_mixed_fp16(options.onnx, fp16_onnx_path(options.onnx))
