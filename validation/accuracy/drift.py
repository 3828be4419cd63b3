"""Drift localisation for ONNX backends: where, block by block, a failing graph leaves the reference.

The exporter records each node's module path in ``pkg.torch.onnx.name_scopes`` (kept by
``to_onnx_proto(..., keep_metadata=True)``), e.g. ``['', 'blocks.0', 'blocks.0.convffns.0', 'gelu_3']``.
The last node, in graph order, whose scopes contain ``blocks.i`` produces block i's output. Those
values become extra graph outputs; ONNX Runtime's values are compared with forward hooks on
``model.blocks[i]`` of the float32 reference, and then the final output.

Activations grow block by block (to 1e12 on some random-weight checkpoints), so a stage passes when
``max |onnx - torch| <= max_abs * max(1, max |torch|)``: the backend's absolute threshold for values
of order one, relative to the stage's largest activation above that.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from esc_deploy.export.onnx_graph.calibration import SCOPES_KEY, node_scopes
from esc_deploy.validation.accuracy.stats import json_number

if TYPE_CHECKING:
    import onnx

    from esc.models import ESCBase

_BLOCK_SCOPE = re.compile(r"^blocks\.(\d+)$")
OUTPUT_STAGE = "output"


def block_output_values(proto: onnx.ModelProto) -> dict[int, str]:
    """{block index: name of the value that block outputs}, from the exporter's name scopes."""
    last: dict[int, str] = {}
    for node in proto.graph.node:
        for scope in node_scopes(node):
            match = _BLOCK_SCOPE.match(scope)
            if match and node.output:
                last[int(match[1])] = node.output[0]
    if not last:
        raise ValueError(
            f"the graph has no {SCOPES_KEY} metadata naming blocks.N: export it with "
            "to_onnx_proto(..., keep_metadata=True)"
        )
    return dict(sorted(last.items()))


def with_extra_outputs(proto: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """A copy of ``proto`` that also outputs the values ``names`` (types from value_info or inference)."""
    import onnx
    from onnx import ModelProto, helper

    model = ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
    if any(n not in types for n in names):
        inferred = onnx.shape_inference.infer_shapes(model)
        types.update({v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info})
    existing = {o.name for o in graph.output}
    for name in names:
        if name in existing:
            continue
        if name not in types:
            raise ValueError(f"cannot find the type of value {name!r} to make it a graph output")
        graph.output.append(helper.make_tensor_value_info(name, types[name], None))
    return model


def torch_block_outputs(model: ESCBase, x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """(output of each model.blocks[i], final output) of the float32 model, via forward hooks."""
    import torch

    captured: dict[int, np.ndarray] = {}

    def hook(index: int) -> Any:
        def save(_module: Any, _inputs: Any, output: torch.Tensor) -> None:
            captured[index] = output.detach().float().cpu().numpy()

        return save

    handles = [block.register_forward_hook(hook(i)) for i, block in enumerate(model.blocks)]
    try:
        with torch.no_grad():
            y = model.eval()(torch.from_numpy(x).float())
    finally:
        for handle in handles:
            handle.remove()
    return [captured[i] for i in range(len(model.blocks))], y.float().cpu().numpy()


@dataclass(frozen=True)
class StageError:
    """One stage (``blocks.i`` or the output): error of the backend against the reference there."""

    stage: str
    value: str
    max_abs: float
    ref_max_abs: float
    tolerance: float
    nonfinite: int

    @property
    def exceeded(self) -> bool:
        return self.nonfinite > 0 or not self.max_abs <= self.tolerance

    def as_json(self) -> dict[str, Any]:
        return {**{k: json_number(v) for k, v in asdict(self).items()}, "exceeded": self.exceeded}


@dataclass(frozen=True)
class DriftReport:
    backend: str
    image: str
    max_abs: float
    stages: tuple[StageError, ...]

    @property
    def first(self) -> StageError | None:
        return next((s for s in self.stages if s.exceeded), None)

    @property
    def first_block(self) -> int | None:
        """Index of the first block past its tolerance (None: no block, or only the output)."""
        first = self.first
        match = _BLOCK_SCOPE.match(first.stage) if first else None
        return int(match[1]) if match else None

    def line(self) -> str:
        first = self.first
        where = f"{self.backend} on {self.image}"
        if first is None:
            return f"drift: {where}: no stage exceeds max abs {self.max_abs:g} (scaled by activation size)"
        if first.stage == OUTPUT_STAGE:
            return (
                f"drift: {where}: every block within tolerance; the error appears after the last block "
                f"(output max abs {first.max_abs:.2e} > {first.tolerance:.2e})"
            )
        if first.nonfinite:
            return f"drift: {where}: first at {first.stage} ({first.nonfinite} non-finite values in {first.value})"
        return (
            f"drift: {where}: first at {first.stage} (value {first.value}): max abs {first.max_abs:.2e} > "
            f"{first.tolerance:.2e} (= {self.max_abs:g} x max(1, max |ref| {first.ref_max_abs:.3g}))"
        )

    def as_json(self) -> dict[str, Any]:
        first = self.first
        return {
            "backend": self.backend,
            "image": self.image,
            "max_abs": self.max_abs,
            "first_stage": None if first is None else first.stage,
            "first_block": self.first_block,
            "line": self.line(),
            "stages": [s.as_json() for s in self.stages],
        }


def _stage_error(stage: str, value: str, got: np.ndarray, ref: np.ndarray, max_abs: float) -> StageError:
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        raise ValueError(f"{stage}: ONNX value {value} has shape {got.shape}, the torch block output {ref.shape}")
    finite = np.isfinite(got)
    diff = np.abs(got[finite] - ref[finite])
    ref_max = float(np.abs(ref).max()) if ref.size else 0.0
    return StageError(
        stage=stage,
        value=value,
        max_abs=float(diff.max()) if diff.size else float("nan"),
        ref_max_abs=ref_max,
        tolerance=max_abs * max(1.0, ref_max),
        nonfinite=int((~finite).sum()),
    )


def localise_drift(
    backend: str,
    proto: onnx.ModelProto,
    model: ESCBase,
    x: np.ndarray,
    *,
    image: str,
    max_abs: float,
    providers: Sequence[str] = ("CPUExecutionProvider",),
) -> DriftReport:
    """Run ``proto`` with every block output exposed and compare each with the reference's hooks."""
    from esc_deploy.export.onnx_graph.ort_session import ort_session

    values = block_output_values(proto)
    if len(values) != len(model.blocks):
        raise ValueError(f"the graph names {len(values)} blocks, the model has {len(model.blocks)}")
    probe = with_extra_outputs(proto, list(values.values()))
    session = ort_session(probe, providers=providers)
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, {session.get_inputs()[0].name: x}), strict=True))
    ref_blocks, ref_out = torch_block_outputs(model, x)
    stages = [_stage_error(f"blocks.{i}", value, got[value], ref_blocks[i], max_abs) for i, value in values.items()]
    stages.append(_stage_error(OUTPUT_STAGE, names[0], got[names[0]], ref_out, max_abs))
    return DriftReport(backend=backend, image=image, max_abs=max_abs, stages=tuple(stages))
