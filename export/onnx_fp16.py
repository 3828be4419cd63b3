"""Mixed-precision (fp16) ONNX for strongly typed TensorRT (11.x removed BuilderFlag.FP16).

Converted with onnxconverter-common: float32 inputs/outputs, fp16 weights and most compute, with
LayerNorm statistics and softmax kept in float32. The custom attention node takes an fp16 qkv map
(the plugin's fp16 path); its relative-position table stays float32, which the plugin accepts.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from export import plugin_contract as contract
from export.files import atomic_output

# Ops whose statistics or exponentials must stay in float32.
FP32_OPS = ("LayerNormalization", "Softmax", "ReduceMean", "Attention")


def to_mixed_fp16(model: Any) -> Any:
    """An fp16 mixed-precision copy of an fp32 ONNX ModelProto (``model`` is left unchanged)."""
    import onnx
    from onnx import ModelProto
    from onnxconverter_common import float16

    copy = ModelProto()
    copy.CopyFrom(model)  # the converter rewrites the model it is given in place
    table_consumers = [n.name for n in copy.graph.node if n.op_type == contract.OP_TYPE]
    with warnings.catch_warnings():
        # One warning per weight below fp16's smallest subnormal, each rounded to +-1e-7: expected, not news.
        warnings.filterwarnings("ignore", message=r"the float32 number .* will be truncated to", category=UserWarning)
        converted = float16.convert_float_to_float16(
            copy,
            keep_io_types=True,
            disable_shape_infer=True,  # the custom node has no schema outside its model-local function
            op_block_list=[*float16.DEFAULT_OP_BLOCK_LIST, *FP32_OPS],
        )
    _keep_tables_fp32(converted, table_consumers)
    # The converter leaves some float32 value_info behind; infer the types and shapes afresh.
    del converted.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(converted, strict_mode=True, data_prop=True)


def _keep_tables_fp32(model: Any, attention_nodes: list[str]) -> None:
    """The relative-position tables feed only the attention nodes; keep them float32 there."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    names = {n.input[1] for n in model.graph.node if n.name in attention_nodes}
    for i, init in enumerate(model.graph.initializer):
        if init.name in names and init.data_type == TensorProto.FLOAT16:
            array = numpy_helper.to_array(init).astype(np.float32)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(array, init.name))


def is_mixed_fp16(model: Any) -> bool:
    """True when most weight bytes are fp16 (the converter's output)."""
    from onnx import TensorProto

    sizes = {TensorProto.FLOAT: 0, TensorProto.FLOAT16: 0}
    for init in model.graph.initializer:
        if init.data_type in sizes:
            sizes[init.data_type] += len(init.raw_data)
    return sizes[TensorProto.FLOAT16] > sizes[TensorProto.FLOAT]


def convert_to_mixed_fp16(src: Path, dst: Path) -> Path:
    """Read an fp32 ONNX file, write its mixed-precision fp16 version atomically; returns ``dst``."""
    import onnx

    model = onnx.load(str(src))
    converted = model if is_mixed_fp16(model) else to_mixed_fp16(model)
    with atomic_output(dst) as tmp:
        onnx.save(converted, str(tmp))
    return Path(dst)
