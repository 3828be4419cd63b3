"""Verify, then widen: the calibrated fp16 plan checked against float32 on the calibration inputs.

The range rule (esc/fp16.py) keeps in float32 what would overflow. It cannot see a value within fp16's
range that later loses most of its magnitude (a LayerNorm over large values with a small spread, the
difference of two large terms), where fp16's steps become the result. The output can: the converted
graph runs against the float32 one on the calibration inputs (ONNX Runtime) and is judged by the
parity thresholds of the fp16 backends the file is for, with headroom (``with_headroom``) for
photographs the calibration did not see. Where it fails, the float32 set widens by
module scopes (the exporter's name scopes, which are the eager model's module paths):

1. the top-level units in graph order (``proj``, each ``blocks.i``, ``last``, ``to_img``, then the model's
   own ops: residual and upsampler): an error made early grows through the blocks that follow, so the
   shortest prefix that passes, found by bisection, ends with the unit that makes the error;
2. that last unit narrowed to its layers by the same bisection over them (it stays whole when all its
   layers in float32 do not pass: its own residual sums matter too).

About log2 of the units of each level in runs, each one conversion and one ONNX Runtime pass over the
calibration inputs. Every unit float32 is the float32 graph: the plan then says that only float32
passes. The same inputs give the same plan.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from esc_deploy.export.onnx_graph.calibration import Fp16Plan, node_scopes

if TYPE_CHECKING:
    import onnxruntime

ROOT = "(model)"  # the model's own ops, outside every submodule: the residual, the upsampler
BY_ACCURACY = "kept for accuracy"
_PROBE = "__verify"
_HUGE = 1e30  # stands for an infinite or NaN relative error, so that gains stay comparable
MAX_RUNS = 12  # verification runs at most (a bisection needs about log2 of the units at each level)


@dataclass(frozen=True)
class Tolerance:
    """What an fp16 backend must meet against float32 (validation/accuracy/stats.py's THRESHOLDS use these)."""

    max_abs: float
    min_psnr_db: float


# The parity thresholds of the fp16 backends; measured as validation/accuracy/stats.py records.
FP16_TOLERANCES: dict[str, Tolerance] = {
    "torch-fp16": Tolerance(max_abs=3e-2, min_psnr_db=45.0),
    "onnxruntime-fp16": Tolerance(max_abs=3e-2, min_psnr_db=47.0),
    "tensorrt-fp16": Tolerance(max_abs=3e-2, min_psnr_db=45.0),
}
# An fp16 file serves ONNX Runtime and TensorRT: it must meet the stricter of the two.
GRAPH_TOLERANCE = Tolerance(
    max_abs=min(FP16_TOLERANCES[k].max_abs for k in ("onnxruntime-fp16", "tensorrt-fp16")),
    min_psnr_db=max(FP16_TOLERANCES[k].min_psnr_db for k in ("onnxruntime-fp16", "tensorrt-fp16")),
)


def with_headroom(tolerance: Tolerance) -> Tolerance:
    """What the calibration inputs must meet: half the max abs and 6 dB more PSNR than ``tolerance``, the
    headroom for photographs the calibration did not see (as the range rule keeps 8x below fp16's maximum)."""
    return Tolerance(max_abs=tolerance.max_abs / 2, min_psnr_db=tolerance.min_psnr_db + 6.0)


@dataclass(frozen=True)
class OutputError:
    """The fp16 output against float32 over the calibration inputs: largest |diff|, worst image's PSNR."""

    max_abs: float
    min_psnr_db: float

    def passes(self, tolerance: Tolerance) -> bool:
        return bool(self.max_abs <= tolerance.max_abs and self.min_psnr_db >= tolerance.min_psnr_db)

    def as_json(self) -> dict[str, float | None]:
        return {"max_abs": _number(self.max_abs), "min_psnr_db": _number(self.min_psnr_db)}


def _number(value: float) -> float | None:
    return float(f"{value:.4g}") if np.isfinite(value) else None


def output_error(got: Sequence[np.ndarray], ref: Sequence[np.ndarray]) -> OutputError:
    """Max |diff| and the lowest per-image PSNR (peak 1.0) as the parity comparator counts them; NaN fails."""
    worst, psnr = 0.0, float("inf")
    for g, r in zip(got, ref, strict=True):
        diff = np.abs(g.astype(np.float64) - r.astype(np.float64))
        if not np.isfinite(diff).all():
            return OutputError(float("inf"), float("-inf"))
        mse = float(np.mean(diff * diff))
        worst = max(worst, float(diff.max()))
        psnr = min(psnr, float("inf") if mse == 0 else 10 * np.log10(1.0 / mse))
    return OutputError(worst, psnr)


def _relative_error(got: np.ndarray, ref: np.ndarray) -> float:
    got64, ref64 = got.astype(np.float64), ref.astype(np.float64)
    if not np.isfinite(got64).all():
        return _HUGE
    norm = float(np.linalg.norm(ref64))
    return min(_HUGE, float(np.linalg.norm(got64 - ref64)) / max(norm, 1e-30))


# Units: module scopes of the graph's nodes.


def _module_path(node: onnx.NodeProto) -> list[str]:
    """['', 'blocks.0', 'blocks.0.pconvs.1']: the node's enclosing modules, outermost first."""
    return node_scopes(node)[:-1]


def unit_children(model: onnx.ModelProto, unit: str | None) -> list[str]:
    """The units one level below ``unit`` (None: the top level, with ``ROOT`` for the model's own ops),
    in graph order."""
    found: dict[str, None] = {}
    for node in model.graph.node:
        path = _module_path(node)
        if unit is None:
            found[path[1] if len(path) > 1 else ROOT] = None
        elif unit in path:
            i = path.index(unit)
            if i + 1 < len(path):
                found[path[i + 1]] = None
    return list(found)


def nodes_in(model: onnx.ModelProto, units: Sequence[str]) -> list[str]:
    """The names of the nodes inside any of ``units`` (``ROOT``: the nodes of no submodule)."""
    wanted = set(units)
    names = []
    for node in model.graph.node:
        path = _module_path(node)
        if wanted.intersection(path) or (ROOT in wanted and len(path) <= 1):
            names.append(node.name)
    return names


def _run(session: onnxruntime.InferenceSession, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    input_name = session.get_inputs()[0].name
    return [session.run(None, {input_name: np.ascontiguousarray(x, dtype=np.float32)})[0] for x in arrays]


@dataclass(frozen=True)
class Step:
    """One verification run: the units kept float32 for accuracy, and the output error it gave."""

    units: tuple[str, ...]
    error: OutputError
    passed: bool


@dataclass
class _Verifier:
    model: onnx.ModelProto
    base: Fp16Plan
    arrays: Sequence[np.ndarray]
    tolerance: Tolerance
    steps: list[Step] = field(default_factory=list)
    _reference: list[np.ndarray] = field(default_factory=list)

    def plan(self, units: Sequence[str]) -> Fp16Plan:
        extra = {n: BY_ACCURACY for n in nodes_in(self.model, units) if n not in self.base.fp32_nodes}
        return replace(self.base, fp32_nodes={**self.base.fp32_nodes, **extra})

    def check(self, units: Sequence[str]) -> bool:
        """Convert under the plan that keeps ``units`` float32, run it on the inputs, judge the output."""
        import warnings

        from esc_deploy.export.onnx_graph.fp16 import to_mixed_fp16
        from esc_deploy.export.onnx_graph.ort_session import ort_session

        if not self._reference:
            self._reference = _run(ort_session(self.model), self.arrays)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # weights below fp16's subnormals, as in to_mixed_fp16
            converted = to_mixed_fp16(self.model, self.plan(units))
        error = output_error(_run(ort_session(converted), self.arrays), self._reference)
        passed = error.passes(self.tolerance)
        self.steps.append(Step(tuple(units), error, passed))
        return passed


def _shortest_passing_prefix(v: _Verifier, fixed: Sequence[str], order: Sequence[str]) -> int:
    """Bisection for the fewest of ``order`` that, with ``fixed``, pass; all of them are taken to pass
    and none to fail (both were seen, or stand for the float32 graph)."""
    low, high = 0, len(order)
    while high - low > 1 and len(v.steps) < MAX_RUNS:
        middle = (low + high) // 2
        if v.check([*fixed, *order[:middle]]):
            high = middle
        else:
            low = middle
    return high


def _top_units(model: onnx.ModelProto) -> list[str]:
    """The top-level units in graph order, the model's own ops (mostly the tail: residual, upsampler) last."""
    top = unit_children(model, None)
    return [u for u in top if u != ROOT] + [u for u in top if u == ROOT]


def _search(v: _Verifier) -> tuple[list[str], bool]:
    """(units kept float32 for accuracy, whether nothing short of everything float32 passes)."""
    if v.check([]):
        return [], False
    top = _top_units(v.model)
    # An error made early grows on its way through the blocks that follow: the shortest prefix in graph
    # order that passes ends with the unit that makes it. Everything float32 is the float32 graph: not run.
    k = _shortest_passing_prefix(v, [], top)
    if k == len(top):
        return top, True
    kept, last = top[: k - 1], top[k - 1]
    children = unit_children(v.model, last)
    # Narrowed to its layers, unless its own ops (the block's residual sums) are needed too.
    if len(children) > 1 and len(v.steps) < MAX_RUNS and v.check([*kept, *children]):
        return [*kept, *children[: _shortest_passing_prefix(v, kept, children)]], False
    return [*kept, last], False


@dataclass(frozen=True)
class SearchResult:
    plan: Fp16Plan
    units: tuple[str, ...]  # kept float32 for accuracy
    error: OutputError  # of the final plan on the calibration inputs
    only_fp32: bool
    steps: tuple[Step, ...]
    seconds: float


def verify_and_widen(
    model: onnx.ModelProto,
    base: Fp16Plan,
    arrays: Sequence[np.ndarray],
    tolerance: Tolerance = GRAPH_TOLERANCE,
) -> SearchResult:
    """``base`` (the range rule's plan) if its conversion meets ``tolerance`` on ``arrays``, else widened.

    The returned plan records the search in ``accuracy`` (its file's ``esc.fp16`` metadata)."""
    start = time.perf_counter()
    v = _Verifier(model, base, arrays, with_headroom(tolerance))
    kept, only_fp32 = _search(v)
    final = next((s for s in reversed(v.steps) if s.units == tuple(kept)), None)
    if final is None:  # every unit: not run, the float32 graph itself
        final = Step(tuple(kept), OutputError(0.0, float("inf")), True)
    seconds = time.perf_counter() - start
    plan = v.plan(kept)
    record = accuracy_record(base, tuple(kept), final, only_fp32, v.steps, v.tolerance)
    return SearchResult(replace(plan, accuracy=record), tuple(kept), final.error, only_fp32, tuple(v.steps), seconds)


def with_units(model: onnx.ModelProto, base: Fp16Plan, accuracy: dict[str, Any]) -> Fp16Plan:
    """``base`` widened by the units another graph of the same model was verified with (``accuracy``, that
    plan's record): the native graph of a parity run keeps the plugin graph's modules float32."""
    units = accuracy.get("fp32_units_by_accuracy", [])
    extra = {n: BY_ACCURACY for n in nodes_in(model, units) if n not in base.fp32_nodes}
    return replace(base, fp32_nodes={**base.fp32_nodes, **extra}, accuracy=accuracy)


def accuracy_record(
    base: Fp16Plan,
    units: tuple[str, ...],
    final: Step,
    only_fp32: bool,
    steps: Sequence[Step],
    tolerance: Tolerance,
) -> dict[str, Any]:
    return {
        "tolerance": {"max_abs": tolerance.max_abs, "min_psnr_db": tolerance.min_psnr_db},
        "passed": final.passed,
        "only_fp32": only_fp32,
        "error": final.error.as_json(),
        "fp32_units_by_range": base.unsafe_scopes(),
        "fp32_units_by_accuracy": list(units),
        "runs": len(steps),  # no time: the same inputs must give the same file bytes
        "steps": [{"units": list(s.units), **s.error.as_json(), "passed": s.passed} for s in steps],
    }


def only_fp32_line(plan: Fp16Plan) -> str | None:
    """One line when nothing but float32 meets the thresholds on the calibration inputs, else None."""
    record = plan.accuracy
    if not record or not record.get("only_fp32"):
        return None
    first = record["steps"][0] if record["steps"] else {}
    return (
        "fp16: only float32 meets the fp16 thresholds on the calibration inputs (max abs <= "
        f"{record['tolerance']['max_abs']:g}, PSNR >= {record['tolerance']['min_psnr_db']:g} dB; the range plan "
        f"gave max abs {first.get('max_abs')}, PSNR {first.get('min_psnr_db')} dB, and no module scope kept in "
        "float32 fixed it)"
    )


class OnlyFloat32Error(ValueError):
    """fp16 was asked for, and nothing but float32 meets the thresholds: one line, with the fp32 command."""


def require_fp16(plan: Fp16Plan, fp32_command: str) -> Fp16Plan:
    """``plan``, or OnlyFloat32Error naming ``fp32_command`` when only float32 passes its verification."""
    line = only_fp32_line(plan)
    if line is not None:
        raise OnlyFloat32Error(f"{line}; build float32 instead: {fp32_command}")
    return plan
