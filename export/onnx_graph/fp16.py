"""Mixed-precision (fp16) ONNX for strongly typed TensorRT (11.x removed BuilderFlag.FP16).

Converted with onnxconverter-common: float32 inputs/outputs, fp16 weights and most compute, with
LayerNorm statistics and softmax kept in float32, and, when calibrated (export/onnx_graph/calibration.py),
every node that produces or reads a value or weight beyond the fp16 rule's limit (esc/fp16.py). The
custom attention node takes an fp16 qkv map (the plugin's fp16 path) unless the rule keeps it in
float32; its relative-position table stays float32, which the plugin accepts. The file records what
stayed float32 and why in its ``esc.fp16`` metadata.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from esc.fp16 import FP16_MAX
from esc_deploy.common.files import atomic_output
from esc_deploy.export import plugin_contract as contract
from esc_deploy.export.onnx_graph.calibration import (
    FP16_KEY,
    Fp16Plan,
    fp16_record,
    measure_value_ranges,
    plan_fp16,
)
from esc_deploy.export.onnx_graph.graph_file import owned_copy, read_graph

if TYPE_CHECKING:
    from esc_deploy.export.onnx_graph.calibration_set import CalibrationSet

SOURCE_KEY = "esc.fp16.source"  # the fp32 file's sha256 and the calibration a converted file came from

# Ops whose statistics or exponentials must stay in float32. Not opset 23's Attention: its softmax
# accumulates in float32 inside TensorRT's fused kernel, which needs q, k, v and the float mask in one
# dtype (a float32 Attention fed fp16 stops the build); the calibrated rule keeps it float32 by range.
FP32_OPS = ("LayerNormalization", "Softmax", "ReduceMean")


def fp32_op_types() -> tuple[str, ...]:
    """Op types kept in float32 whatever their range: the converter's defaults and ``FP32_OPS``."""
    from onnxconverter_common import float16

    return (*float16.DEFAULT_OP_BLOCK_LIST, *FP32_OPS)


def calibrate(
    model: onnx.ModelProto, calibration: CalibrationSet, *, progress: bool = False, verify: bool = True
) -> Fp16Plan:
    """The rule applied to ``model`` with its values measured on ``calibration`` (ONNX Runtime), then
    verified against float32 on the same inputs and widened where it fails (fp16_search.py).

    ``progress``: a tqdm bar on stderr, one step per input (each takes seconds on a CPU)."""
    from tqdm import tqdm

    sizes = ", ".join(f"{i.size[0]}x{i.size[1]}" for i in calibration.inputs)
    bar = tqdm(total=len(calibration.inputs), desc=f"fp16 calibration ({sizes})", unit="input", disable=not progress)

    def step(done: int, total: int) -> None:
        bar.update(done - bar.n)

    with bar:
        ranges = measure_value_ranges(model, calibration.arrays(), progress=step)
    plan = plan_fp16(model, ranges, op_types=fp32_op_types(), calibration=calibration.describe())
    if not verify:
        return plan
    from esc_deploy.export.onnx_graph.fp16_search import verify_and_widen

    return verify_and_widen(model, plan, calibration.arrays()).plan


def to_mixed_fp16(model: onnx.ModelProto, plan: Fp16Plan | None = None) -> onnx.ModelProto:
    """An fp16 mixed-precision copy of an fp32 ONNX ModelProto (``model`` is left unchanged).

    ``plan`` (from ``calibrate``) says which nodes stay float32; without one, only the op types do.
    """
    from onnxconverter_common import float16

    plan = plan or plan_fp16(model, None, op_types=fp32_op_types())
    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # the converter rewrites the model it is given in place
    # With value_info for a weight, the converter casts it to fp16 and back in front of a float32 node
    # (clipping weights beyond 65504) instead of keeping it float32; weights need no value_info.
    weights = {init.name for init in copy.graph.initializer}
    kept_info = [v for v in copy.graph.value_info if v.name not in weights]
    del copy.graph.value_info[:]
    copy.graph.value_info.extend(kept_info)
    _unshare_weights(copy, set(plan.fp32_nodes), set(fp32_op_types()))
    table_consumers = [n.name for n in copy.graph.node if n.op_type == contract.OP_TYPE]
    with warnings.catch_warnings():
        # One warning per weight below fp16's smallest subnormal, each rounded to +-1e-7: expected, not news.
        warnings.filterwarnings("ignore", message=r"the float32 number .* will be truncated to", category=UserWarning)
        converted = float16.convert_float_to_float16(
            copy,
            max_finite_val=FP16_MAX,  # the default, 1e4, would clip larger weights silently
            keep_io_types=True,
            disable_shape_infer=True,  # the custom node has no schema outside its model-local function
            op_block_list=list(fp32_op_types()),
            node_block_list=list(plan.fp32_nodes),
        )
    _keep_tables_fp32(converted, table_consumers)
    _drop_fp16_round_trips(converted.graph)
    # The converter leaves some float32 value_info behind; infer the types and shapes afresh.
    del converted.graph.value_info[:]
    converted = onnx.shape_inference.infer_shapes(converted, strict_mode=True, data_prop=True)
    total = len(model.graph.node)
    metadata = plan.metadata(
        total_nodes=total,
        fp16_weight_share=fp16_weight_share(converted),
        fp16_node_share=1.0 - len(plan.fp32_nodes) / max(total, 1),
    )
    onnx.helper.set_model_props(converted, {**{p.key: p.value for p in converted.metadata_props}, FP16_KEY: metadata})
    return converted


def fp16_cost(path: Path) -> dict[str, Any] | None:
    """What the fp16 file's plan cost, from its ``esc.fp16`` metadata (None for a float32 file): the units kept
    float32 by range and by accuracy, the shares of nodes and weights still fp16, and the calibration error the
    verification reached (None where it did not run)."""
    info = fp16_record(read_graph(path))
    if info is None:
        return None
    accuracy = info.get("accuracy") or {}
    return {
        "fp32_units_by_range": info["unsafe_scopes"],
        "fp32_units_by_accuracy": accuracy.get("fp32_units_by_accuracy", []),
        "fp16_node_share": info["fp16_node_share"],
        "fp16_weight_share": info["fp16_weight_share"],
        "calibration_error": accuracy.get("error"),
    }


def _unshare_weights(model: onnx.ModelProto, fp32_nodes: set[str], fp32_ops: set[str]) -> int:
    """Give float32 nodes their own copy of each weight they share with fp16 nodes; returns the count.

    The exporter deduplicates equal weights (e.g. every LayerNorm's ones), and the converter keeps a
    weight float32 whenever a float32 node reads it, which would hand fp16 nodes a float32 input.
    """
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}

    def in_fp32(node: onnx.NodeProto) -> bool:
        return node.name in fp32_nodes or node.op_type in fp32_ops

    sides: dict[str, set[bool]] = {}
    for node in graph.node:
        for name in node.input:
            if name in weights:
                sides.setdefault(name, set()).add(in_fp32(node))
    shared = {name for name, kinds in sides.items() if kinds == {True, False}}
    for name in sorted(shared):
        twin = onnx.TensorProto()
        twin.CopyFrom(weights[name])
        twin.name = f"{name}__fp32"
        graph.initializer.append(twin)
    for node in graph.node:
        if in_fp32(node):
            for i, name in enumerate(node.input):
                if name in shared:
                    node.input[i] = f"{name}__fp32"
    return len(shared)


def _drop_fp16_round_trips(graph: onnx.GraphProto) -> int:
    """Wire float32 nodes to each other directly; returns how many fp16 round trips went.

    The converter casts every float32 node's output to fp16 and each float32 consumer's input back,
    so a value the rule keeps in float32 because it exceeds fp16's range would pass through fp16
    (as inf) between two float32 nodes. ``Cast(fp32 -> fp16) -> Cast(fp16 -> fp32)`` becomes the
    float32 value itself; the fp16 cast stays for consumers that compute in fp16.
    """

    def cast_to(node: onnx.NodeProto) -> int | None:
        return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None

    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}
    renamed: dict[str, str] = {}
    dropped: list[onnx.NodeProto] = []
    for node in graph.node:
        if cast_to(node) != onnx.TensorProto.FLOAT or node.output[0] in graph_outputs:
            continue
        half = producer.get(node.input[0])
        if half is None or cast_to(half) != onnx.TensorProto.FLOAT16:
            continue
        source = producer.get(half.input[0])
        if source is None or source.op_type == "Cast":  # a graph input or a cast chain: leave it
            continue
        renamed[node.output[0]] = half.input[0]
        dropped.append(node)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
    gone = {id(n) for n in dropped}
    # fp16 casts left without a consumer go too.
    still_used = {name for node in graph.node if id(node) not in gone for name in node.input} | graph_outputs
    gone |= {id(n) for n in graph.node if cast_to(n) == onnx.TensorProto.FLOAT16 and n.output[0] not in still_used}
    kept = [n for n in graph.node if id(n) not in gone]
    del graph.node[:]
    graph.node.extend(kept)
    return len(dropped)


def fp16_weight_share(model: onnx.ModelProto) -> float:
    """fp16 weight values / all floating-point weight values (initializers, counted in elements)."""
    import math

    counts = {onnx.TensorProto.FLOAT: 0, onnx.TensorProto.FLOAT16: 0}
    for init in model.graph.initializer:
        if init.data_type in counts:
            counts[init.data_type] += math.prod(init.dims)
    total = sum(counts.values())
    return counts[onnx.TensorProto.FLOAT16] / total if total else 0.0


def _keep_tables_fp32(model: onnx.ModelProto, attention_nodes: list[str]) -> None:
    """The relative-position tables feed only the attention nodes; keep them float32 there."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    names = {n.input[1] for n in model.graph.node if n.name in attention_nodes}
    for i, init in enumerate(model.graph.initializer):
        if init.name in names and init.data_type == TensorProto.FLOAT16:
            array = numpy_helper.to_array(init).astype(np.float32)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(array, init.name))


def is_mixed_fp16(model: onnx.ModelProto) -> bool:
    """True when the model holds any fp16 weight (initializer or Constant node): already converted."""
    fp16 = onnx.TensorProto.FLOAT16
    if any(init.data_type == fp16 for init in model.graph.initializer):
        return True
    return any(
        attr.name == "value" and attr.t.data_type == fp16
        for node in model.graph.node
        if node.op_type == "Constant"
        for attr in node.attribute
    )


def convert_to_mixed_fp16(
    src: Path, dst: Path, calibration: CalibrationSet | None, *, progress: bool = False
) -> tuple[Path, bool]:
    """Read an fp32 ONNX file, write its mixed-precision fp16 version atomically; returns ``dst`` and
    whether it was reused.

    ``calibration`` None: by op type only (the uncalibrated conversion). A ``dst`` made earlier from
    the same file with the same calibration is reused: calibration runs the model several times, and its
    inputs are fixed (calibration_set.py), so the same inputs give the same bytes.
    """
    from esc_deploy.common.files import sha256_file

    described = calibration.describe() if calibration else None
    # "verified": a file converted before the accuracy check (fp16_search.py) is converted again.
    source = {"sha256": sha256_file(src), "calibration": described, "verified": calibration is not None}
    if _converted_from(dst) == source:
        return Path(dst), True
    model = owned_copy(src)
    if is_mixed_fp16(model):
        converted = model
    else:
        plan = None
        if calibration is not None:
            from esc_deploy.export.onnx_graph.fp16_search import require_fp16

            fp32_command = f"python export/build_engine.py --onnx {src} (without --fp16)"
            plan = require_fp16(calibrate(model, calibration, progress=progress), fp32_command)
        converted = to_mixed_fp16(model, plan)
        props = {p.key: p.value for p in converted.metadata_props}
        onnx.helper.set_model_props(converted, {**props, SOURCE_KEY: json.dumps(source, sort_keys=True)})
    with atomic_output(dst) as tmp:
        tmp.write_bytes(converted.SerializeToString(deterministic=True))
    return Path(dst), False


def _converted_from(path: Path) -> dict | None:
    """The source record of an earlier conversion at ``path``; None where there is none (or no readable file)."""
    try:
        model = read_graph(path)
    except Exception:
        return None
    props = {p.key: p.value for p in model.metadata_props}
    return json.loads(props[SOURCE_KEY]) if SOURCE_KEY in props else None
