"""Running the benchmark's cases (suite.py says what is measured): each case alone, the paper's
protocol, or the cases of one (scale, dtype) in interleaved rounds."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from esc_deploy.export.precision import Precision
from esc_deploy.validation.bench.prepare import (
    ORT_GRAPHS,
    Device,
    Prepared,
    prepare_eager,
    prepare_onnxruntime,
    prepare_tensorrt,
)
from esc_deploy.validation.bench.suite import (
    ENGINE_BACKENDS,
    BenchmarkOptions,
    CaseResult,
    build_models,
    format_case,
    format_size,
    skip_reason,
)
from esc_deploy.validation.bench.timing import Measured, Timed, measure, memory_pass, timed_runs, warm_up

if TYPE_CHECKING:
    from esc.models import ESCBase

FIXED_MEMORY_BACKENDS = ("tensorrt", "tensorrt-fused")  # memory: the engine's device memory (Prepared.fixed_memory_mib)


def new_case(model: ESCBase, backend: str, dtype: Precision, options: BenchmarkOptions) -> CaseResult:
    """The case's result to fill, already 'skipped' where it cannot run here."""
    scale = model.config.scale
    h, w = options.input_size(scale)
    result = CaseResult(backend, scale, dtype, (h, w), (h * scale, w * scale), "ok")
    reason = skip_reason(backend, options.device, plugin=options.plugin)
    if reason is None and min(h, w) < model.config.min_side:
        reason = f"input {format_size((h, w))} is below the model's minimum side {model.config.min_side}"
    if reason:
        result.status, result.reason = "skipped", reason
    return result


def prepare_case(model: ESCBase, case: CaseResult, options: BenchmarkOptions) -> Prepared:
    shape = (1, 3, *case.input_size)
    if case.backend.startswith("eager-"):
        return prepare_eager(model, case.backend, case.dtype, options.device, shape, options.calibration)
    if case.backend in ORT_GRAPHS:
        graph = ORT_GRAPHS[case.backend]
        return prepare_onnxruntime(
            model, case.dtype, options.device, shape, options.calibration, graph=graph, threads=options.threads
        )
    return prepare_tensorrt(model, case.dtype, shape, options, attention=ENGINE_BACKENDS[case.backend])


def _record_error(case: CaseResult, exc: Exception) -> None:
    """A backend that cannot run a case is reported, not fatal; its partial timings are dropped."""
    first = (str(exc).strip().splitlines() or [""])[0]
    case.status, case.reason = "error", f"{type(exc).__name__}: {first}"
    case.times_ms, case.start_s = [], []


def _record_memory(case: CaseResult, prepared: Prepared, measured: Measured | None) -> None:
    """The measured peak, or the backend's own figure (TensorRT's, where ``measured`` may be None)."""
    case.detail = prepared.detail
    if prepared.fixed_memory_mib is not None:
        case.memory_mib, case.memory_kind = prepared.fixed_memory_mib, prepared.memory_kind
    elif measured is not None:
        case.memory_mib, case.memory_kind = measured.peak_mib, prepared.memory_kind or measured.memory_kind
        case.memory_before_mib = measured.before_mib


def _record_times(case: CaseResult, timed: Timed) -> None:
    case.times_ms += timed.times_ms
    case.start_s += timed.start_s


def _release(device: Device) -> None:
    """Frees what the cases just dropped held, before the next case's memory is measured."""
    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


def run_case(
    model: ESCBase,
    backend: str,
    dtype: Precision,
    options: BenchmarkOptions,
    *,
    progress: bool = False,
    origin: float | None = None,
) -> CaseResult:
    """One case alone, the paper's protocol: prepared, warmed up, timed (memory over the timed runs)."""
    result = new_case(model, backend, dtype, options)
    if result.status != "ok":
        return result
    try:
        prepared = prepare_case(model, result, options)
        measured = measure(
            prepared,
            runs=options.runs,
            warmup=options.warmup,
            device=options.device,
            progress=progress,
            desc=result.label,
            origin=origin,
        )
    except Exception as exc:
        _record_error(result, exc)
        return result
    _record_times(result, measured.timed)
    _record_memory(result, prepared, measured)
    return result


def _measure_memory_alone(model: ESCBase, case: CaseResult, options: BenchmarkOptions) -> None:
    """The case's memory with no other case prepared: what one case alone measures, before the rounds."""
    try:
        prepared = prepare_case(model, case, options)
        _record_memory(case, prepared, memory_pass(prepared, warmup=options.warmup, device=options.device))
    except Exception as exc:
        _record_error(case, exc)


def run_interleaved(
    model: ESCBase,
    dtype: Precision,
    options: BenchmarkOptions,
    *,
    progress: bool = False,
    origin: float | None = None,
) -> list[CaseResult]:
    """Every backend's case of one (scale, dtype): memory first, each case alone; then every case
    prepared and warmed up, and ``options.rounds`` rounds in which each case runs ``options.runs`` times
    in turn (a round-robin), so that a machine's noise slows every backend alike."""
    from tqdm import tqdm

    origin = time.perf_counter() if origin is None else origin
    cases = [new_case(model, backend, dtype, options) for backend in options.backends]
    for case in cases:
        # TensorRT's memory is its engine's, known once prepared: no pass (and no second engine build) for it
        if case.status == "ok" and case.backend not in FIXED_MEMORY_BACKENDS:
            _measure_memory_alone(model, case, options)
            _release(options.device)  # the case's objects went with the call
    live: list[tuple[CaseResult, Prepared]] = []
    for case in cases:
        if case.status != "ok":
            continue
        try:
            prepared = prepare_case(model, case, options)
            warm_up(prepared, options.warmup)
        except Exception as exc:
            _record_error(case, exc)
            continue
        if case.backend in FIXED_MEMORY_BACKENDS:
            _record_memory(case, prepared, None)
        case.rounds = options.round_count
        live.append((case, prepared))
    desc = f"x{model.config.scale} {dtype}, {options.round_count} rounds"
    with tqdm(total=options.total_runs * len(live), desc=desc, disable=not progress, leave=False) as bar:
        for _ in range(options.round_count):
            for case, prepared in live:
                if case.status != "ok":  # raised in an earlier round
                    continue
                try:
                    timed = timed_runs(
                        prepared, runs=options.runs, device=options.device, origin=origin, on_run=bar.update
                    )
                except Exception as exc:
                    _record_error(case, exc)
                    continue
                _record_times(case, timed)
    return cases


def run_benchmark(
    options: BenchmarkOptions,
    *,
    models: dict[int, ESCBase] | None = None,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> list[CaseResult]:
    """Every (scale, dtype, backend) case, in that order; those of one (scale, dtype) in interleaved
    rounds when ``options.rounds`` > 1, else one after another."""
    models = models if models is not None else build_models(options)
    if options.threads is not None:
        import torch

        torch.set_num_threads(options.threads)  # the process's; ONNX Runtime's sessions take theirs in prepare
    origin = time.perf_counter()
    results = []
    for scale in sorted(models):
        for dtype in options.dtypes:
            if options.round_count > 1:
                group = run_interleaved(models[scale], dtype, options, progress=progress, origin=origin)
                _release(options.device)  # the group's prepared cases, before the next group's memory
                for case in group:
                    log(format_case(case))
                results += group
                continue
            for backend in options.backends:
                case = run_case(models[scale], backend, dtype, options, progress=progress, origin=origin)
                log(format_case(case))
                results.append(case)
    return results
