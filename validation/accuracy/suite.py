"""The parity run as a library function: runners produce outputs, comparators judge them.

    result = run_parity(model, load_inputs(scale=4, min_side=17), ParityOptions())
    result.passed, result.lines()

Backends that cannot run here are recorded as skipped with the reason, never as passed; a backend that
raises while running is a FAIL with the error. ONNX backends that fail are localised block by block
(validation/accuracy/drift.py). Runner-against-runner cross-checks go through Polygraphy's comparator.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from esc_deploy.common.defaults import DEFAULT_PLUGIN
from esc_deploy.export.onnx_graph.calibration_set import (
    DEFAULT_LARGE_SHAPE,
    CalibrationSet,
    calibration_for,
    check_calibration_choice,
)
from esc_deploy.export.precision import as_precision
from esc_deploy.validation.accuracy.drift import DriftReport, localise_drift
from esc_deploy.validation.accuracy.fp16 import BlockRange, Fp16Context, block_ranges, diagnose
from esc_deploy.validation.accuracy.stats import (
    THRESHOLDS,
    CrossCheck,
    Threshold,
    Verdict,
    compare,
    polygraphy_cross_check,
)
from esc_deploy.validation.backends import (
    BACKENDS,
    REFERENCE,
    Backend,
    Graph,
    NamedRunner,
    Precision,
    RunOutputs,
    build_parity_engine,
    export_graphs,
    onnxruntime_runner,
    run_inputs,
    skip_reason,
    tensorrt_runner,
    torch_runner,
)

if TYPE_CHECKING:
    import onnx

    from esc.models import ESCBase
    from esc_deploy.validation.images import InputImage

Status = Literal["reference", "PASS", "FAIL", "skipped"]
REFERENCE_ATTENTION = "naive"  # the plain-math attention: the readable reference


@dataclass(frozen=True)
class ParityOptions:
    """Every choice of a parity run besides the model and the inputs."""

    backends: tuple[str, ...] | None = None  # None: every backend that can run here
    torch_device: str = "cpu"  # torch-fp16's device; the reference always runs in float32 on the CPU
    trt_precision: Precision = Precision.FP16
    engine: Path | None = None  # a built engine for the tensorrt backend; else one is built in work_dir
    plugin: Path = DEFAULT_PLUGIN
    work_dir: Path = Path("reports/parity")
    progress: bool = False
    localise: bool = True
    # The fp16 rule's calibration (export/onnx_graph/calibration_set.py), the same for every fp16 backend.
    calibration: str = "auto"
    calibration_shape: tuple[int, int] = DEFAULT_LARGE_SHAPE

    def __post_init__(self) -> None:
        unknown = [b for b in self.backends or () if b not in BACKENDS]
        if unknown:
            raise ValueError(f"unknown backends {unknown}; known: {', '.join(BACKENDS)}")
        check_calibration_choice(self.calibration)
        object.__setattr__(self, "trt_precision", as_precision(self.trt_precision, "trt precision"))


@dataclass
class BackendResult:
    backend: Backend
    status: Status
    precision: str
    reason: str = ""  # why skipped, or the error that made it fail
    verdict: Verdict | None = None
    drift: DriftReport | None = None
    drift_error: str = ""
    run: RunOutputs | None = None
    fp16_diagnosis: str = ""  # where an fp16 backend that failed overflows (validation/accuracy/fp16.py)

    @property
    def name(self) -> str:
        return self.backend.name

    def line(self) -> str:
        if self.status == "skipped":
            return f"skipped: {self.name}: {self.reason}"
        if self.status == "reference":
            return f"reference: {self.name} ({self.run.description if self.run else ''})"
        if self.verdict is None:
            return f"FAIL {self.name}: {self.reason}"
        return self.verdict.line()


@dataclass
class ParityResult:
    model: dict[str, Any]
    inputs: list[InputImage]
    results: list[BackendResult]
    cross_checks: list[CrossCheck] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    thresholds: Mapping[str, Threshold] = field(default_factory=lambda: dict(THRESHOLDS))
    calibration: dict[str, Any] = field(default_factory=dict)  # {} when fp16 ran uncalibrated
    block_ranges: list[BlockRange] = field(default_factory=list)  # the reference's, on the parity inputs
    fp16_plans: dict[str, Any] = field(default_factory=dict)  # per graph: what stayed float32, and why

    @property
    def compared(self) -> list[BackendResult]:
        return [r for r in self.results if r.status in ("PASS", "FAIL")]

    @property
    def passed(self) -> bool:
        return (
            bool(self.compared)
            and all(r.status == "PASS" for r in self.compared)
            and all(c.passed for c in self.cross_checks)
        )

    def result(self, name: str) -> BackendResult:
        return next(r for r in self.results if r.name == name)

    def lines(self) -> list[str]:
        out = [r.line() for r in self.results]
        out += [c.line() for c in self.cross_checks]
        out += [r.drift.line() for r in self.results if r.drift is not None]
        out += [f"drift: {r.name}: not localised: {r.drift_error}" for r in self.results if r.drift_error]
        out += [r.fp16_diagnosis for r in self.results if r.fp16_diagnosis]
        if not self.compared:
            out.append("FAIL: no backend besides the reference ran, so nothing was compared")
        return out


def run_parity(
    model: ESCBase,
    inputs: Sequence[InputImage],
    options: ParityOptions | None = None,
    *,
    graphs: Mapping[str, onnx.ModelProto] | None = None,
    thresholds: Mapping[str, Threshold] | None = None,
    log: Callable[[str], None] = print,
) -> ParityResult:
    """Run every chosen backend on ``inputs`` and judge each against torch float32.

    ``graphs`` ({'plugin'|'native': fp32 ModelProto with name scopes}) replaces the export, e.g. to
    check a given file or a deliberately broken one. ``thresholds`` replaces the table in accuracy/stats.py.
    """
    from esc_deploy.validation.machine import machine_info

    options = options or ParityOptions()
    table = dict(THRESHOLDS if thresholds is None else thresholds)
    start = time.perf_counter()
    names = options.backends or tuple(BACKENDS)
    if REFERENCE not in names:
        names = (REFERENCE, *names)
    results: dict[str, BackendResult] = {}
    for name in names:
        backend = BACKENDS[name]
        precision = options.trt_precision if backend.kind == "tensorrt" else backend.precision
        device = options.torch_device if backend.kind == "torch" else "cpu"
        reason = skip_reason(backend, device=device)
        results[name] = BackendResult(backend, "skipped" if reason else "FAIL", precision, reason or "")
    runnable = [r for r in results.values() if r.status != "skipped"]

    needed: list[Graph] = []
    for r in runnable:
        given_engine = options.engine is not None and r.backend.name == "tensorrt"
        uses_graph = r.backend.kind == "onnxruntime" or (r.backend.kind == "tensorrt" and not given_engine)
        if uses_graph and r.backend.graph is not None and r.backend.graph not in needed:
            needed.append(r.backend.graph)
    torch_fp16 = any(r.backend.kind == "torch" and r.precision == "fp16" for r in runnable)
    if torch_fp16 and options.calibration != "off" and "plugin" not in needed:
        needed.append("plugin")  # its verified fp16 plan names the modules torch-fp16 keeps float32
    fp32_graphs: dict[str, Any] = dict(graphs or {})
    to_export = [g for g in needed if g not in fp32_graphs]
    if to_export:
        t0 = time.perf_counter()
        log(f"exporting the {' and '.join(to_export)} graphs")
        fp32_graphs.update(export_graphs(model, to_export))
        log(f"exported in {time.perf_counter() - t0:.1f} s")

    reference_model = _reference_model(model)
    reference_runner = torch_runner(REFERENCE, reference_model, precision=Precision.FP32, device="cpu")
    reference = run_inputs(reference_runner, inputs, progress=options.progress)
    results[REFERENCE].status, results[REFERENCE].run = "reference", reference
    fp16 = Fp16Context(model, _calibration(model, options, runnable, log), options.calibration, fp32_graphs)
    for r in runnable:
        if r.name == REFERENCE:
            continue
        t0 = time.perf_counter()
        _run_one(r, model, inputs, reference, fp32_graphs, fp16, table, options, reference_model, log)
        # Progress only: the verdict lines are printed together in the summary (ParityResult.lines).
        log(f"ran {r.name} ({r.status}) in {time.perf_counter() - t0:.1f} s")

    cross_checks = _cross_checks(results, table)
    return ParityResult(
        model=_describe_model(model),
        inputs=list(inputs),
        results=list(results.values()),
        cross_checks=cross_checks,
        machine=machine_info(),
        seconds=time.perf_counter() - start,
        thresholds=table,
        calibration=fp16.calibration.describe() if fp16.calibration is not None else {},
        block_ranges=block_ranges(reference_model, inputs),
        fp16_plans=fp16.summary(),
    )


def _calibration(
    model: ESCBase, options: ParityOptions, runnable: Sequence[BackendResult], log: Callable[[str], None]
) -> CalibrationSet | None:
    """The fp16 rule's calibration set, when an fp16 backend runs and calibration is on."""
    if not any(r.precision == "fp16" for r in runnable):
        return None
    chosen = calibration_for(options.calibration, model.config, large_shape=options.calibration_shape)
    if chosen is not None:
        log("fp16 calibration on " + ", ".join(chosen.describe()["inputs"]))
    return chosen


def _reference_model(model: ESCBase) -> ESCBase:
    import copy

    reference = copy.deepcopy(model).float().cpu().eval()
    reference.set_attention(REFERENCE_ATTENTION)
    return reference


def _describe_model(model: ESCBase) -> dict[str, Any]:
    return {"class": type(model).__name__, "config": model.config.to_dict(), "attention_reference": "naive"}


def _make_runner(
    r: BackendResult,
    model: ESCBase,
    inputs: Sequence[InputImage],
    fp32_graphs: Mapping[str, onnx.ModelProto],
    fp16: Fp16Context,
    options: ParityOptions,
    log: Callable[[str], None],
) -> NamedRunner:
    backend = r.backend
    if backend.kind == "torch":
        device = options.torch_device
        attention = REFERENCE_ATTENTION if device == "cpu" else "auto"
        return torch_runner(backend.name, model, precision=backend.precision, device=device, fp16=fp16,
                            attention=attention)  # fmt: skip
    if backend.kind == "onnxruntime":
        return onnxruntime_runner(backend.name, fp16.graph_for(backend, fp32_graphs), model)
    fused = backend.name == "tensorrt-fused"  # no plugin: TensorRT's own attention kernel
    engine = None if fused else options.engine  # a given engine is the plugin engine
    if engine is None:
        engine = build_parity_engine(
            fp32_graphs["plugin"],
            inputs,
            precision=options.trt_precision,
            plugin=None if fused else options.plugin,
            work_dir=options.work_dir,
            calibration=options.calibration,
            log=log,
            attention="tensorrt" if fused else "plugin",
        )
    plugin = None if fused or not options.plugin.is_file() else options.plugin
    trt_runner, r.precision = tensorrt_runner(backend.name, engine, plugin=plugin)
    return trt_runner


def _run_one(
    r: BackendResult,
    model: ESCBase,
    inputs: Sequence[InputImage],
    reference: RunOutputs,
    fp32_graphs: Mapping[str, onnx.ModelProto],
    fp16: Fp16Context,
    table: Mapping[str, Threshold],
    options: ParityOptions,
    reference_model: ESCBase,
    log: Callable[[str], None],
) -> None:
    from esc_deploy.export.trt.env import MissingDependencyError

    try:
        runner = _make_runner(r, model, inputs, fp32_graphs, fp16, options, log)
    except MissingDependencyError as exc:  # e.g. the TensorRT plugin library is not built
        r.status, r.reason = "skipped", str(exc)
        return
    except Exception as exc:
        r.status, r.reason = "FAIL", f"could not start: {_one_line(exc)}"
        return
    try:
        r.run = run_inputs(runner, inputs, progress=options.progress)
    except Exception as exc:
        r.status, r.reason = "FAIL", f"error while running: {_one_line(exc)}"
        return
    key = f"tensorrt-{r.precision}" if r.backend.kind == "tensorrt" else r.name
    r.verdict = compare(r.name, r.run.outputs, REFERENCE, reference.outputs, threshold_key=key, thresholds=table)
    r.status = "PASS" if r.verdict.passed else "FAIL"
    if r.status == "FAIL" and r.precision == "fp16":
        r.fp16_diagnosis = diagnose(r.name, r.backend.kind, fp16, fp32_graphs, inputs)
    if r.status == "FAIL" and options.localise:
        _localise(r, fp32_graphs, fp16, inputs, reference_model, log)


def _localise(
    r: BackendResult,
    fp32_graphs: Mapping[str, onnx.ModelProto],
    fp16: Fp16Context,
    inputs: Sequence[InputImage],
    reference_model: ESCBase,
    log: Callable[[str], None],
) -> None:
    if r.backend.kind != "onnxruntime" or r.verdict is None:
        r.drift_error = "block-by-block localisation runs on ONNX Runtime backends only; run onnxruntime-* too"
        return
    image = next(i for i in inputs if i.name == r.verdict.worst_image)
    try:
        r.drift = localise_drift(
            r.name,
            fp16.graph_for(r.backend, fp32_graphs),
            reference_model,
            image.pixels,
            image=image.name,
            max_abs=r.verdict.threshold.max_abs,
        )
    except (ValueError, RuntimeError) as exc:
        r.drift_error = _one_line(exc)
        return
    log(f"localised the drift of {r.name} (see the summary)")


def _cross_checks(results: Mapping[str, BackendResult], table: Mapping[str, Threshold]) -> list[CrossCheck]:
    """Runner against runner through Polygraphy: native vs plugin graph, TensorRT vs ONNX Runtime."""
    pairs = [
        ("onnxruntime-native", "onnxruntime-plugin"),
        ("onnxruntime-fp16-native", "onnxruntime-fp16-plugin"),
    ]
    for name in ("tensorrt", "tensorrt-fused"):
        trt = results.get(name)
        if trt is not None and trt.run is not None:
            pairs.append((name, "onnxruntime-plugin" if trt.precision == "fp32" else "onnxruntime-fp16-plugin"))
    checks = []
    for candidate, baseline in pairs:
        a, b = results.get(candidate), results.get(baseline)
        if a is None or b is None or a.run is None or b.run is None:
            continue
        key = f"tensorrt-{a.precision}" if a.backend.kind == "tensorrt" else candidate
        checks.append(
            polygraphy_cross_check(candidate, a.run.outputs, baseline, b.run.outputs, atol=table[key].max_abs)
        )
    return checks


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    suffix = f" ({Path(where.filename).name}:{where.lineno})" if where else ""
    return f"{type(exc).__name__}: {text[0] if text else ''}{suffix}"
