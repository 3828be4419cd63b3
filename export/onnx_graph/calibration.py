"""Calibration of an fp32 ONNX graph for fp16: every value's max |x|, measured with ONNX Runtime.

The probe graph gives each floating value two scalar consumers (its max and its min) and outputs only
those scalars, so the memory is that of one inference (1.1 GiB for ESC-light at 128x128, 1.0 without
probes): marking every value as a graph output instead (the usual way) would hold all of them at once,
tens of GiB at the sides the rule needs. The rule
itself (esc/fp16.py) then keeps in float32 each node that produces or consumes an unsafe value, and
each node that reads an unsafe weight.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import onnx

from esc.fp16 import FP16_MAX, SAFE_LIMIT, SAFE_MARGIN, is_fp16_safe

FP16_KEY = "esc.fp16"
SCOPES_KEY = "pkg.torch.onnx.name_scopes"
_PROBE_SUFFIX = "__absmax"

# Reasons a node stays float32, as recorded in the file's metadata.
BY_OP_TYPE = "op type"
UNSAFE_OUTPUT = "output over the fp16 limit"
UNSAFE_INPUT = "input over the fp16 limit"
UNSAFE_WEIGHT = "weight over the fp16 limit"


def fp16_record(model: onnx.ModelProto) -> dict[str, Any] | None:
    """The ``esc.fp16`` metadata of an fp16 file (what stayed float32 and why, the calibration, the
    verification), None for a float32 file."""
    props = {p.key: p.value for p in model.metadata_props}
    return json.loads(props[FP16_KEY]) if FP16_KEY in props else None


def floating_values(model: onnx.ModelProto) -> dict[str, int]:
    """{value name: element type} of every float32 value a top-level node produces."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.output]}
    produced = [out for node in graph.node for out in node.output if out]
    return {name: types[name] for name in produced if types.get(name) == onnx.TensorProto.FLOAT}


def probe_graph(model: onnx.ModelProto, values: Sequence[str]) -> onnx.ModelProto:
    """A copy of ``model`` whose outputs are ``max |v|`` (a float32 scalar) for each of ``values``.

    Each probe is two scalar reductions (max, and -min: no full-size |v| temporary), placed right after
    the node making the value; the session runs them promptly (``priority_order``), so ONNX Runtime
    frees each value as it would without the probe.
    """
    from onnx import helper

    wanted = set(values)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    graph = probe.graph
    nodes = list(graph.node)
    del graph.node[:]
    del graph.output[:]
    outputs = {}
    for node in nodes:
        graph.node.append(node)
        for name in node.output:
            if name not in wanted:
                continue
            top, low, neg, peak = (f"{name}{_PROBE_SUFFIX}_{k}" for k in ("max", "min", "neg", "peak"))
            graph.node.extend(
                [
                    helper.make_node("ReduceMax", [name], [top], keepdims=0),
                    helper.make_node("ReduceMin", [name], [low], keepdims=0),
                    helper.make_node("Neg", [low], [neg]),
                    helper.make_node("Max", [top, neg], [peak]),
                ]
            )
            outputs[name] = helper.make_tensor_value_info(peak, onnx.TensorProto.FLOAT, [])
    graph.output.extend(outputs[name] for name in values)
    return probe


def measure_value_ranges(
    model: onnx.ModelProto,
    inputs: Sequence[np.ndarray],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """{value name: max |x| over ``inputs``} for every float32 value of the graph (ONNX Runtime, CPU)."""
    from esc_deploy.export.onnx_graph.ort_session import ort_session

    values = list(floating_values(model))
    session = ort_session(probe_graph(model, values), priority_order=True)
    input_name = session.get_inputs()[0].name
    peaks = dict.fromkeys(values, 0.0)
    for done, x in enumerate(inputs, 1):
        outputs = session.run(None, {input_name: np.ascontiguousarray(x, dtype=np.float32)})
        for name, value in zip(values, outputs, strict=True):
            peaks[name] = float(np.maximum(peaks[name], value))  # NaN (fp32 overflowed already) propagates
        if progress is not None:
            progress(done, len(inputs))
    return peaks


def weight_ranges(model: onnx.ModelProto) -> dict[str, float]:
    """{initializer name: max |w|} of every float32 initializer."""
    from onnx import numpy_helper

    out = {}
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            array = numpy_helper.to_array(init)
            out[init.name] = float(np.abs(array).max()) if array.size else 0.0
    return out


def node_scopes(node: onnx.NodeProto) -> list[str]:
    """The exporter's module path list of ``node``: ['', 'blocks.0', 'blocks.0.convffns.0', 'gelu_3']."""
    import ast

    for prop in node.metadata_props:
        if prop.key == SCOPES_KEY:
            try:
                value = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return []
            return [str(s) for s in value] if isinstance(value, list | tuple) else []
    return []


def node_scope(node: onnx.NodeProto) -> str:
    """The deepest module path of ``node`` ('' when none is recorded): the list ends with the op's name."""
    scopes = node_scopes(node)
    return scopes[-2] if len(scopes) >= 2 else ""


@dataclass(frozen=True)
class UnsafeValue:
    """A value over the limit: who makes it, its calibrated max |x|, the module it belongs to."""

    value: str
    node: str
    op_type: str
    max_abs: float
    scope: str


@dataclass(frozen=True)
class Fp16Plan:
    """What the fp16 conversion keeps in float32 and why; recorded in the file as ``esc.fp16``."""

    fp32_nodes: dict[str, str]  # node name -> reason
    unsafe: tuple[UnsafeValue, ...] = ()
    limit: float = SAFE_LIMIT
    calibration: dict[str, Any] = field(default_factory=dict)  # images and sizes, or {} when not calibrated
    accuracy: dict[str, Any] = field(default_factory=dict)  # the verification (fp16_search.py), {} when none ran

    @property
    def calibrated(self) -> bool:
        return bool(self.calibration)

    def reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for reason in self.fp32_nodes.values():
            counts[reason] = counts.get(reason, 0) + 1
        return dict(sorted(counts.items()))

    def unsafe_scopes(self) -> list[str]:
        """Module paths holding an unsafe value, in graph order, without repeats."""
        return list(dict.fromkeys(u.scope for u in self.unsafe if u.scope))

    def metadata(self, *, total_nodes: int, fp16_weight_share: float, fp16_node_share: float) -> str:
        verified = {"accuracy": self.accuracy} if self.accuracy else {}
        return json.dumps(
            {
                **verified,
                "rule": f"max |x| <= {self.limit:g} (fp16 max {FP16_MAX:g} / margin {SAFE_MARGIN:g})",
                "calibrated": self.calibrated,
                "calibration": self.calibration,
                "nodes": total_nodes,
                "fp32_nodes": len(self.fp32_nodes),
                "fp32_reasons": self.reasons(),
                "fp16_node_share": round(fp16_node_share, 4),
                "fp16_weight_share": round(fp16_weight_share, 4),
                "unsafe_scopes": self.unsafe_scopes(),
                "unsafe": [asdict(u) for u in self.unsafe[:50]],
                "fp32_node_names": sorted(n for n, r in self.fp32_nodes.items() if r != BY_OP_TYPE),
            },
            sort_keys=True,
        )


def plan_fp16(
    model: onnx.ModelProto,
    ranges: dict[str, float] | None,
    *,
    op_types: Sequence[str],
    limit: float = SAFE_LIMIT,
    calibration: dict[str, Any] | None = None,
) -> Fp16Plan:
    """Apply the rule to ``model``'s nodes: by op type always, by range when ``ranges`` is given."""
    fp32: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type in op_types:
            fp32[node.name] = BY_OP_TYPE
    unsafe: list[UnsafeValue] = []
    if ranges is not None:
        weights = weight_ranges(model)
        unsafe_values = {name for name, peak in ranges.items() if not is_fp16_safe(peak, limit)}
        unsafe_weights = {name for name, peak in weights.items() if not is_fp16_safe(peak, limit)}
        for node in model.graph.node:
            outs = [o for o in node.output if o in unsafe_values]
            for out in outs:
                unsafe.append(UnsafeValue(out, node.name, node.op_type, ranges[out], node_scope(node)))
            if node.name in fp32:
                continue
            if outs:
                fp32[node.name] = UNSAFE_OUTPUT
            elif any(i in unsafe_values for i in node.input):
                fp32[node.name] = UNSAFE_INPUT
            elif any(i in unsafe_weights for i in node.input):
                fp32[node.name] = UNSAFE_WEIGHT
    return Fp16Plan(fp32, tuple(unsafe), limit, dict(calibration or {}))


def first_overflow(model: onnx.ModelProto, ranges: dict[str, float]) -> UnsafeValue | None:
    """The first node, in graph order, whose float32 output would be inf in fp16 (max |x| > 65504)."""
    for node in model.graph.node:
        for out in node.output:
            if out in ranges and not is_fp16_safe(ranges[out], FP16_MAX):
                return UnsafeValue(out, node.name, node.op_type, ranges[out], node_scope(node))
    return None
