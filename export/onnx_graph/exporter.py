"""ESC -> ONNX: one file for any batch, height and width, with the attention as the plugin node or
as standard ops, in float32 or mixed fp16.

The model is exported in its deploy form (``ESCBase.to_deploy``): the geometric re-parameterisation
is folded, the dynamic 3x3 kernel is a batch-free sum of shifted products, and no tensor is written
in place, so the graph has no ScatterND.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from esc_deploy.common.files import atomic_output
from esc_deploy.export import plugin_contract as contract
from esc_deploy.export.onnx_graph import attention as onnx_attention
from esc_deploy.export.onnx_graph.calibration_set import (
    DEFAULT_LARGE_SHAPE,
    CalibrationSet,
    calibration_for,
    check_calibration_choice,
)
from esc_deploy.export.onnx_graph.metadata import model_props
from esc_deploy.export.precision import Precision, as_precision
from esc_deploy.export.tensor_names import INPUT_NAME, OUTPUT_NAME

if TYPE_CHECKING:
    import onnx
    import onnx_ir

    from esc.models import ESCBase

AttentionMode = Literal["plugin", "native"]

DEFAULT_OPSET = 18  # LayerNormalization, reflect Pad, Split(num_outputs); parsed by TensorRT 10 and 11
ATTENTION_OP_OPSET = 23  # first opset with a standard Attention node


@dataclass(frozen=True)
class OnnxExportOptions:
    """Every choice that changes the exported file."""

    attention: AttentionMode = "plugin"
    precision: Precision = Precision.FP32
    opset: int = DEFAULT_OPSET
    static_shape: tuple[int, int, int, int] | None = None
    # fp16 only: 'auto', 'off' or a folder of photographs (export/onnx_graph/calibration_set.py).
    calibration: str = "auto"
    calibration_shape: tuple[int, int] = DEFAULT_LARGE_SHAPE

    def __post_init__(self) -> None:
        if self.attention not in ("plugin", "native"):
            raise ValueError(f"attention must be 'plugin' or 'native', got {self.attention!r}")
        object.__setattr__(self, "precision", as_precision(self.precision))
        if not DEFAULT_OPSET <= self.opset <= 25:
            raise ValueError(f"opset must be between {DEFAULT_OPSET} and 25, got {self.opset}")
        check_calibration_choice(self.calibration)

    @property
    def torch_backend(self) -> str:
        if self.attention == "plugin":
            return onnx_attention.PLUGIN_BACKEND
        if self.opset >= ATTENTION_OP_OPSET:
            return onnx_attention.NATIVE_SDPA_BACKEND
        return onnx_attention.NATIVE_BACKEND

    def file_suffix(self) -> str:
        """``''`` for the default (plugin, fp32, dynamic), else e.g. ``_native_fp16``."""
        parts: list[str] = [] if self.attention == "plugin" else [self.attention]
        if self.precision != "fp32":
            parts.append(self.precision)
        if self.static_shape:
            parts.append("x".join(map(str, self.static_shape)))
        return "".join(f"_{p}" for p in parts)


@dataclass(frozen=True)
class OnnxSummary:
    path: Path
    nodes: int
    attention_nodes: int
    size_bytes: int
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    fp16_line: str = ""  # what stayed float32 and why, for an fp16 file

    def line(self) -> str:
        return (
            f"{self.nodes} nodes ({self.attention_nodes} attention), {self.size_bytes / 1e6:.2f} MB, "
            f"inputs {', '.join(self.inputs)} -> outputs {', '.join(self.outputs)}"
        )


def _example_and_dims(model: ESCBase, options: OnnxExportOptions) -> tuple[torch.Tensor, Any]:
    config = model.config
    if options.static_shape:
        b, c, h, w = options.static_shape
        if c != 3:
            raise ValueError(f"static shape needs 3 channels, got {c}")
        if min(h, w) < config.min_side:
            raise ValueError(f"static shape sides must be >= {config.min_side} for window {config.window_size}")
        return torch.rand(b, c, h, w), None
    from torch.export import Dim

    # Batch 2 and sides off the window grid, so that export keeps every size symbolic.
    ws = config.window_size
    example = torch.rand(2, 3, 2 * ws + 3, 2 * ws + 7)
    dims = {
        0: Dim("batch", min=1),
        2: Dim("height", min=config.min_side),
        3: Dim("width", min=config.min_side),
    }
    return example, {"x": dims}


def _simplify(model: onnx_ir.Model) -> None:
    """Fold shape arithmetic and constants, drop dead nodes, lift and deduplicate initializers."""
    import onnx_ir.passes.common as common
    from onnxscript.optimizer import fold_constants_ir

    fold_constants_ir(model, onnx_shape_inference=False, input_size_limit=1024, output_size_limit=1024 * 1024)
    passes = [
        common.RemoveUnusedNodesPass(),
        common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common.DeduplicateInitializersPass(),
        common.CommonSubexpressionEliminationPass(),
        common.RemoveUnusedNodesPass(),
        common.NameFixPass(),
    ]
    for simplify in passes:
        simplify(model)


def _gelu_in_fusable_order(model: onnx.ModelProto) -> int:
    """``x * (0.5 * (1 + erf(x / sqrt2)))`` -> ``(x * (1 + erf(x / sqrt2))) * 0.5``; returns the count.

    The exporter writes the exact GELU with the 0.5 applied to ``1 + erf`` first, a form ONNX
    Runtime's GeluFusion does not match, so it ran as five element-wise passes over each activation
    (a tenth of ESC-light's CPU time). Scaling by 0.5 is exact in binary floating point, so the
    reordered graph computes the same values, and ONNX Runtime fuses it into one ``Gelu`` kernel.
    """
    import numpy as np
    from onnx import numpy_helper

    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}

    def is_constant(name: str, value: float) -> bool:
        array = constants.get(name)
        return array is not None and array.size == 1 and bool(np.isclose(float(array.reshape(())), value))

    def only_consumer(name: str) -> onnx.NodeProto | None:
        users = consumers.get(name, [])
        outputs = {o.name for o in graph.output}
        return users[0] if len(users) == 1 and name not in outputs else None

    count = 0
    for erf in [n for n in graph.node if n.op_type == "Erf"]:
        div = producer.get(erf.input[0])
        add = only_consumer(erf.output[0])
        half = only_consumer(add.output[0]) if add is not None else None
        outer = only_consumer(half.output[0]) if half is not None else None
        if div is None or add is None or half is None or outer is None:
            continue
        x = div.input[0]
        if not (
            div.op_type == "Div"
            and is_constant(div.input[1], 2**0.5)
            and add.op_type == "Add"
            and any(is_constant(i, 1.0) for i in add.input)
            and half.op_type == "Mul"
            and outer.op_type == "Mul"
            and sorted(outer.input) == sorted([x, half.output[0]])
        ):
            continue
        half_const = [i for i in half.input if i != add.output[0]]
        if len(half_const) != 1 or not is_constant(half_const[0], 0.5):
            continue
        # half: x * (1 + erf); outer: that * 0.5. The node order stays topological.
        del half.input[:]
        half.input.extend([x, add.output[0]])
        del outer.input[:]
        outer.input.extend([half.output[0], half_const[0]])
        count += 1
    return count


def _strip_metadata(model: onnx.ModelProto) -> None:
    """Drop the exporter's per-node provenance (stack traces, FX names: 1.5 MB on ESC-light) but each
    node's module path (``pkg.torch.onnx.name_scopes``, 0.1 MB), which names modules in fp16 plans."""
    from esc_deploy.export.onnx_graph.calibration import SCOPES_KEY

    graph = model.graph
    for item in [*graph.node, *graph.value_info, *graph.input, *graph.output, *graph.initializer]:
        scopes = [p for p in item.metadata_props if p.key == SCOPES_KEY]
        del item.metadata_props[:]
        item.metadata_props.extend(scopes)
        item.doc_string = ""
    graph.doc_string = ""


def _describe(values: Any) -> list[str]:
    from onnx import helper

    out = []
    for value in values:
        tensor = value.type.tensor_type
        dims = [d.dim_param or str(d.dim_value) for d in tensor.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        out.append(f"{value.name}[{','.join(dims)}] {dtype}")
    return out


def to_onnx_proto(
    model: ESCBase,
    options: OnnxExportOptions,
    *,
    keep_metadata: bool = False,
    calibration: CalibrationSet | None = None,
) -> onnx.ModelProto:
    """The exported, checked ModelProto (in memory).

    ``keep_metadata`` keeps the exporter's per-node provenance, e.g. ``pkg.torch.onnx.name_scopes``
    (the module path of each node), which drift localisation uses to find block outputs. For fp16,
    ``calibration`` (default: what ``options.calibration`` names) measures what stays float32.
    """
    import onnx

    if options.precision == "fp16" and calibration is None:
        calibration = calibration_for(options.calibration, model.config, large_shape=options.calibration_shape)

    deploy = model.to_deploy().float().cpu()
    onnx_attention.register()  # the export backends are selectable only once registered
    deploy.set_attention(options.torch_backend)
    example, dynamic_shapes = _example_and_dims(deploy, options)
    translation = onnx_attention.plugin_translation() if options.attention == "plugin" else None
    with onnx_attention.plugin_schema_registered(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            deploy,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=dynamic_shapes,
            custom_translation_table=translation,
            opset_version=options.opset,
            external_data=False,
            verbose=False,
            optimize=False,  # the exporter's full optimizer takes minutes; _simplify does what matters
        )
    if program is None:  # only the legacy exporter returns None
        raise RuntimeError("torch.onnx.export returned no program")
    _simplify(program.model)
    proto = program.model_proto
    _gelu_in_fusable_order(proto)
    if not keep_metadata and options.precision != "fp16":  # the fp16 plan names modules: strip after it
        _strip_metadata(proto)
    if options.attention == "plugin":
        from esc_deploy.export.onnx_graph.function import function_proto

        proto.functions.append(function_proto())
    proto.producer_name = "esc-deploy"
    onnx.helper.set_model_props(proto, model_props(model.config, options.attention))
    proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True, data_prop=True)
    onnx.checker.check_model(proto, full_check=True)
    if options.precision == "fp16":
        from esc_deploy.export.onnx_graph.fp16 import calibrate, to_mixed_fp16
        from esc_deploy.export.onnx_graph.fp16_search import require_fp16

        plan = None
        if calibration is not None:
            plan = require_fp16(calibrate(proto, calibration), "python export/to_onnx.py --precision fp32")
        proto = to_mixed_fp16(proto, plan)
        if not keep_metadata:
            _strip_metadata(proto)
        onnx.checker.check_model(proto)
    return proto


def export_onnx(model: ESCBase, output: str | Path, options: OnnxExportOptions | None = None) -> OnnxSummary:
    """Export ``model`` to one self-contained ONNX file, written atomically."""
    options = options or OnnxExportOptions()
    calibration = None
    if options.precision == "fp16":  # a bad calibration folder fails here, before minutes of export
        calibration = calibration_for(options.calibration, model.config, large_shape=options.calibration_shape)
    proto = to_onnx_proto(model, options, calibration=calibration)
    data = proto.SerializeToString(deterministic=True)
    with atomic_output(output) as tmp:
        tmp.write_bytes(data)
    return OnnxSummary(
        path=Path(output),
        nodes=len(proto.graph.node),
        attention_nodes=sum(n.op_type == contract.OP_TYPE for n in proto.graph.node),
        size_bytes=len(data),
        inputs=_describe(proto.graph.input),
        outputs=_describe(proto.graph.output),
        fp16_line=fp16_summary(proto),
    )


def fp16_summary(proto: onnx.ModelProto) -> str:
    """'fp16: 97.9% of nodes, 99.1% of weight bytes; 24 nodes fp32 (op type: 24); ...' ('' for fp32)."""
    from esc_deploy.export.onnx_graph.calibration import fp16_record

    info = fp16_record(proto)
    if info is None:
        return ""
    reasons = ", ".join(f"{k}: {v}" for k, v in info["fp32_reasons"].items())
    where = f"; over the limit in {', '.join(info['unsafe_scopes'][:6])}" if info["unsafe_scopes"] else ""
    calibrated = "calibrated on " + ", ".join(info["calibration"]["inputs"]) if info["calibrated"] else "not calibrated"
    return (
        f"fp16: {info['fp16_node_share']:.1%} of nodes, {info['fp16_weight_share']:.1%} of weight bytes; "
        f"{info['fp32_nodes']} nodes fp32 ({reasons}){where}; {calibrated}{_verified(info.get('accuracy'))}"
    )


def _verified(accuracy: dict | None) -> str:
    """'; verified: max abs 1.2e-02, PSNR 55.3 dB; float32 for accuracy: proj, blocks.0' ('' when not run)."""
    if not accuracy:
        return ""
    error = accuracy["error"]
    units = accuracy["fp32_units_by_accuracy"]
    widened = f"; float32 for accuracy: {', '.join(units[:6])}{' ...' if len(units) > 6 else ''}" if units else ""
    psnr = "inf" if error["min_psnr_db"] is None else f"{error['min_psnr_db']:.1f}"  # None: identical
    return f"; verified on them: max abs {error['max_abs']:.2e}, PSNR {psnr} dB{widened}"
