"""fp16 in a parity run: one calibration for every fp16 backend, and the overflow diagnosis.

Every fp16 backend follows the rule of esc/fp16.py with the same calibration set: torch-fp16 through
module ranges (esc.fp16.to_mixed_half), the ONNX Runtime and TensorRT graphs through node ranges
(export/onnx_graph/calibration.py). When one still fails, ``diagnose`` measures the float32 model on the
parity inputs and names the first value computed in fp16 that exceeds 65504.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from esc.fp16 import FP16_MAX, ModuleRange, fp32_modules, is_fp16_safe, measure_module_ranges

if TYPE_CHECKING:
    import onnx

    from esc.models import ESCBase
    from esc_deploy.export.onnx_graph.calibration import Fp16Plan
    from esc_deploy.export.onnx_graph.calibration_set import CalibrationSet
    from esc_deploy.validation.backends import Backend
    from esc_deploy.validation.images import InputImage

CALIBRATE_COMMAND = "python export/to_onnx.py --precision fp16 --calibration auto"


@dataclass
class Fp16Context:
    """The model, the calibration set (None: off) and what was derived from them, computed once."""

    model: ESCBase
    calibration: CalibrationSet | None
    choice: str = "auto"
    graphs: Mapping[str, Any] = field(default_factory=dict)  # the fp32 graphs; 'plugin' decides torch-fp16's units
    _module_ranges: dict[str, ModuleRange] | None = None
    _plans: dict[str, Fp16Plan] = field(default_factory=dict)
    _graphs: dict[str, Any] = field(default_factory=dict)

    def module_ranges(self) -> dict[str, ModuleRange] | None:
        """The eager model's calibrated ranges (None without calibration)."""
        import torch

        if self.calibration is None:
            return None
        if self._module_ranges is None:
            model = _measuring_copy(self.model)
            arrays = [torch.from_numpy(a) for a in self.calibration.arrays()]
            self._module_ranges = measure_module_ranges(model, arrays)
        return self._module_ranges

    def plan(self, graph: str, proto: onnx.ModelProto) -> Fp16Plan:
        from esc_deploy.export.onnx_graph.calibration import plan_fp16
        from esc_deploy.export.onnx_graph.fp16 import calibrate, fp32_op_types

        if graph not in self._plans:
            if self.calibration is None:
                self._plans[graph] = plan_fp16(proto, None, op_types=fp32_op_types())
            elif graph != "plugin" and "plugin" in self.graphs:  # the same modules as the plugin graph's
                from esc_deploy.export.onnx_graph.fp16_search import with_units

                verified = self.plan("plugin", self.graphs["plugin"]).accuracy
                base = calibrate(proto, self.calibration, verify=False)
                self._plans[graph] = with_units(proto, base, {**verified, "units_from": "plugin graph"})
            else:
                self._plans[graph] = calibrate(proto, self.calibration)
        return self._plans[graph]

    def mixed_graph(self, graph: str, proto: onnx.ModelProto) -> onnx.ModelProto:
        """The fp16 conversion of the fp32 ``graph`` ('plugin' or 'native') under the plan, made once."""
        import warnings

        from esc_deploy.export.onnx_graph.fp16 import to_mixed_fp16

        if graph not in self._graphs:
            plan = self.plan(graph, proto)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "the float32 number 4e-08 will be truncated to 1e-07"
                self._graphs[graph] = to_mixed_fp16(proto, plan)
        return self._graphs[graph]

    def mixed_model(self) -> tuple[ESCBase, list[str]]:
        """The eager model in float16, with the modules the rule keeps in float32 (none without calibration);
        it takes float32 pixels (esc.fp16.to_mixed_half)."""
        from esc.fp16 import to_mixed_half

        ranges = self.module_ranges()
        mixed, kept = to_mixed_half(self.model, ranges or {}, extra=self.accuracy_units())
        return mixed, kept  # type: ignore[return-value]

    def accuracy_units(self) -> list[str]:
        """The modules the plugin graph's verified plan keeps float32 for accuracy ('' for the whole model):
        torch-fp16 keeps the same ones (none without calibration or a plugin graph)."""
        from esc_deploy.export.onnx_graph.fp16_search import ROOT

        if self.calibration is None or "plugin" not in self.graphs:
            return []
        units = self.plan("plugin", self.graphs["plugin"]).accuracy.get("fp32_units_by_accuracy", [])
        return ["" if unit == ROOT else unit for unit in units]

    def summary(self) -> dict[str, Any]:
        """Each fp16 graph's ``esc.fp16`` record (shares, units kept by range and by accuracy, the error
        achieved on the calibration inputs), and torch-fp16's units, for parity.json."""
        import json

        from esc_deploy.export.onnx_graph.calibration import FP16_KEY

        out: dict[str, Any] = {}
        for graph, proto in sorted(self._graphs.items()):
            record = json.loads({p.key: p.value for p in proto.metadata_props}.get(FP16_KEY, "{}"))
            out[graph] = {k: v for k, v in record.items() if k not in ("unsafe", "fp32_node_names")}
        if self.calibration is not None and "plugin" in self.graphs:
            out["torch"] = {"fp32_units_by_accuracy": self.accuracy_units()}
        return out

    def graph_for(self, backend: Backend, fp32_graphs: Mapping[str, onnx.ModelProto]) -> onnx.ModelProto:
        """The ModelProto ``backend`` runs: the fp32 graph, or its fp16 conversion under the plan."""
        if backend.graph is None:
            raise ValueError(f"{backend.name} runs no ONNX graph")
        proto = fp32_graphs[backend.graph]
        return proto if backend.precision == "fp32" else self.mixed_graph(backend.graph, proto)


def _measuring_copy(model: ESCBase) -> ESCBase:
    """A float32 CPU copy with memory-lean attention (the values do not depend on the backend)."""
    import copy

    measuring = copy.deepcopy(model).float().cpu().eval()
    measuring.set_attention("sdpa")
    return measuring


@dataclass(frozen=True)
class BlockRange:
    block: str
    max_abs: float


def block_ranges(model: ESCBase, inputs: Sequence[InputImage]) -> list[BlockRange]:
    """Each block's largest |output| of the float32 model on ``inputs`` (for the report's figure)."""
    import torch

    ranges = measure_module_ranges(_measuring_copy(model), [torch.from_numpy(i.pixels) for i in inputs])
    return [BlockRange(f"blocks.{i}", ranges[f"blocks.{i}"].max_out) for i in range(len(model.blocks))]


def diagnose(
    name: str,
    kind: str,
    fp16: Fp16Context,
    fp32_graphs: Mapping[str, onnx.ModelProto],
    inputs: Sequence[InputImage],
) -> str:
    """One line: the first value computed in fp16 whose float32 |x| exceeds 65504 on ``inputs``, or none."""
    hint = (
        f"calibrate: {CALIBRATE_COMMAND}"
        if fp16.calibration is None
        else "the calibration set missed it: calibrate on such images, python export/to_onnx.py --precision fp16 "
        "--calibration DIR"
    )
    if kind == "torch":
        where, peak = _first_torch_overflow(fp16, inputs)
    else:
        graph = "plugin" if kind == "tensorrt" else _graph_of(name)
        if graph not in fp32_graphs:
            return f"fp16: {name}: not diagnosed (no float32 {graph} graph in this run)"
        where, peak = _first_onnx_overflow(fp16, graph, fp32_graphs[graph], inputs)
    if where is None:
        return (
            f"fp16: {name}: no value computed in fp16 exceeds {FP16_MAX:g} on these inputs (largest {peak:.3g}): "
            "the error is fp16 rounding, not overflow"
        )
    return f"fp16: {name}: first overflow at {where}: float32 max |x| {peak:.3g} > {FP16_MAX:g}; {hint}"


def _graph_of(backend_name: str) -> str:
    return "native" if backend_name.endswith("native") else "plugin"


def _first_torch_overflow(fp16: Fp16Context, inputs: Sequence[InputImage]) -> tuple[str | None, float]:
    import torch

    ranges = measure_module_ranges(_measuring_copy(fp16.model), [torch.from_numpy(i.pixels) for i in inputs])
    calibrated = fp16.module_ranges()
    kept = fp32_modules(calibrated) if calibrated is not None else []
    largest = 0.0
    # Hooks fire as modules finish, so the dict runs innermost first, in execution order.
    for module, r in ranges.items():
        if kept == [""] or any(module == k or module.startswith(k + ".") for k in kept):
            continue
        if not is_fp16_safe(r.max_out, FP16_MAX):
            return f"module {module}", r.max_out
        largest = max(largest, r.max_out)
    return None, largest


def _first_onnx_overflow(
    fp16: Fp16Context, graph: str, proto: onnx.ModelProto, inputs: Sequence[InputImage]
) -> tuple[str | None, float]:
    from esc_deploy.export.onnx_graph.calibration import measure_value_ranges, node_scope

    ranges = measure_value_ranges(proto, [i.pixels for i in inputs])
    kept = fp16.plan(graph, proto).fp32_nodes
    largest = 0.0
    for node in proto.graph.node:
        if node.name in kept:
            continue
        for out in node.output:
            if out not in ranges:
                continue
            if not is_fp16_safe(ranges[out], FP16_MAX):
                scope = node_scope(node)
                return f"ONNX node {node.name} ({node.op_type}{', ' + scope if scope else ''})", ranges[out]
            largest = max(largest, ranges[out])
    return None, largest
