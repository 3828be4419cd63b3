"""Latency and peak memory of ESC per backend, as a library (validation/benchmark.py is the CLI).

The paper's protocol: a 1280x720 output (input = output / scale), batch 1, a warm-up, then the median
of at least 100 runs timed with CUDA events; peak memory is ``torch.cuda.max_memory_allocated`` (weights,
activations and workspace of the torch backends) or, for TensorRT, the engine's device memory (one
execution context). Without a GPU the same cases run in CPU mode: eager torch and ONNX Runtime on the
CPU, ``time.perf_counter``, peak resident memory from /proc (VmHWM, reset before each case), else
``resource.getrusage`` (the process's lifetime peak).

Timing rule: a run is ``ready(fn())``, the backend's call and the step that waits for its output
(CUDA launches return before their kernels finish); measure() times both, whatever the timer.

Backends: eager-naive, eager-sdpa, eager-flex (compiled FlexAttention: the paper's eager model),
eager-fused (this project's kernel), onnxruntime (the native graph; mixed fp16 for fp16),
onnxruntime-plugin (the default export: ONNX Runtime runs the plugin node's function body),
onnxruntime-opset23 (the native graph at opset 23: one standard Attention node each), tensorrt.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from esc_deploy.common.defaults import DEFAULT_PLUGIN, DEFAULT_PRESET, DEFAULT_SEED
from esc_deploy.export.precision import Precision, as_precision
from esc_deploy.validation.bench.memory import CpuPeakMemory, vm_rss_kib
from esc_deploy.validation.bench.prepare import (
    ORT_GRAPHS,
    Device,
    Prepared,
    prepare_eager,
    prepare_onnxruntime,
    prepare_tensorrt,
)

if TYPE_CHECKING:
    from esc.models import ESCBase

BACKENDS = (
    "eager-naive",
    "eager-sdpa",
    "eager-flex",
    "eager-fused",
    *ORT_GRAPHS,  # onnxruntime, onnxruntime-plugin, onnxruntime-opset23
    "tensorrt",
)
PAPER_RUNS = 100
PAPER_OUTPUT = (720, 1280)  # (height, width): the paper's 1280x720


@dataclass(frozen=True)
class BenchmarkOptions:
    """Every choice that changes what is measured."""

    backends: tuple[str, ...] = BACKENDS
    output_size: tuple[int, int] = PAPER_OUTPUT  # (height, width), as every size here; the CLI spells it WxH
    scales: tuple[int, ...] = (2, 4)
    dtypes: tuple[Precision, ...] = (Precision.FP16, Precision.FP32)
    runs: int = PAPER_RUNS
    warmup: int = 10
    device: Device = "cpu"
    threads: int | None = None  # CPU threads of torch and ONNX Runtime (None: each library's default)
    preset: str = DEFAULT_PRESET
    checkpoint: Path | None = None
    plugin: Path = DEFAULT_PLUGIN
    work_dir: Path = Path("reports/benchmark")
    # fp16 cases follow the calibrated fp16 rule (esc/fp16.py), as parity does: 'auto', 'off' or a folder.
    calibration: str = "auto"

    def __post_init__(self) -> None:
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise ValueError(f"unknown backends {unknown}; expected some of {', '.join(BACKENDS)}")
        if self.runs < 1 or self.warmup < 0:
            raise ValueError(f"expected runs >= 1 and warmup >= 0, found {self.runs} and {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads: expected a positive integer, found {self.threads}")
        from esc_deploy.export.onnx_graph.calibration_set import check_calibration_choice

        check_calibration_choice(self.calibration)
        if not self.dtypes:
            raise ValueError("dtypes: expected fp16 and/or fp32, found none")
        object.__setattr__(self, "dtypes", tuple(as_precision(d, "dtypes") for d in self.dtypes))
        if not self.scales or any(s < 1 for s in self.scales):
            raise ValueError(f"scales: expected positive integers, found {list(self.scales)}")
        height, width = self.output_size
        for s in self.scales:
            if width % s or height % s:
                raise ValueError(f"output size {format_size(self.output_size)} is not divisible by scale {s}")

    def input_size(self, scale: int) -> tuple[int, int]:
        """(height, width) of the input for ``scale``."""
        height, width = self.output_size
        return height // scale, width // scale

    @property
    def protocol(self) -> str:
        """'paper (CUDA events, warm-up 10, median of 100 runs)' or 'reduced (...; why)'."""
        timer = "CUDA events" if self.device == "cuda" else "time.perf_counter"
        why = [f"fewer than {PAPER_RUNS} runs"] if self.runs < PAPER_RUNS else []
        why += ["CPU mode"] if self.device != "cuda" else []
        kind = f"reduced: {', '.join(why)}; " if why else "paper: "
        return f"{kind}{timer}, warm-up {self.warmup}, median of {self.runs} runs"


def format_size(size: tuple[int, int]) -> str:
    """(height, width) -> 'WxH': how sizes are spelled for people (the CLI, the paper, the report)."""
    height, width = size
    return f"{width}x{height}"


@dataclass
class CaseResult:
    backend: str
    scale: int
    dtype: Precision
    input_size: tuple[int, int]  # (height, width)
    output_size: tuple[int, int]  # (height, width)
    status: Literal["ok", "skipped", "error"]
    reason: str = ""
    times_ms: list[float] = field(default_factory=list)
    memory_mib: float | None = None
    memory_kind: str = ""
    memory_before_mib: float | None = None  # CPU mode: resident memory when the timed runs began
    detail: str = ""

    @property
    def label(self) -> str:
        return f"{self.backend} x{self.scale} {self.dtype}"

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.times_ms) if self.times_ms else None

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        times = sorted(self.times_ms)
        data.pop("times_ms")
        if times:
            data.update(
                median_ms=statistics.median(times),
                mean_ms=statistics.fmean(times),
                min_ms=times[0],
                p90_ms=times[min(len(times) - 1, int(0.9 * len(times)))],
                max_ms=times[-1],
                runs=len(times),
                fps=1000.0 / statistics.median(times),
            )
        data["times_ms"] = [round(t, 4) for t in self.times_ms]
        return data


# ---------------------------------------------------------------------------------------------- models


def build_models(options: BenchmarkOptions) -> dict[int, ESCBase]:
    """{scale: model}: the checkpoint (its own scale), or the preset with seeded random weights."""
    import torch

    import esc

    if options.checkpoint is not None:
        model = esc.load_model(options.checkpoint)
        if set(options.scales) != {model.config.scale}:
            raise ValueError(
                f"--scale {','.join(map(str, options.scales))} does not match the checkpoint's x{model.config.scale}"
            )
        return {model.config.scale: model.eval()}
    models = {}
    for scale in options.scales:
        torch.manual_seed(DEFAULT_SEED)
        models[scale] = esc.build_model(options.preset, scale=scale).eval()
    return models


def skip_reason(backend: str, device: Device, *, plugin: Path = DEFAULT_PLUGIN) -> str | None:
    """Why ``backend`` cannot run here, or None."""
    import importlib.util

    if backend in ("eager-flex", "eager-fused") and device != "cuda":
        what = "compiled FlexAttention (inductor cannot compile it for CPU in torch 2.13)"
        if backend == "eager-fused":
            what = "this project's CUDA kernel"
        return f"needs a CUDA device: {what}"
    if backend == "eager-fused":
        from esc.kernel_files import LIBRARY_ENV

        cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
        if not (os.environ.get(LIBRARY_ENV) or shutil.which("nvcc") or (Path(cuda_home) / "bin" / "nvcc").is_file()):
            return f"needs nvcc to compile the fused kernel, or {LIBRARY_ENV} naming a prebuilt library"
    if backend in ORT_GRAPHS:
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed"
        if device == "cuda":
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                return "this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
    if backend == "tensorrt":
        if device != "cuda":  # else it would run on a GPU anyway, timed by the CPU mode's clock
            return f"TensorRT runs on CUDA only, not on device {device}"
        from esc_deploy.export.trt.env import cannot_run_engines

        reason = cannot_run_engines()
        if reason is not None:
            return reason
        if not plugin.is_file():
            from esc_deploy.export.trt.plugin import BUILD_PLUGIN_HINT

            return f"plugin library {plugin} not built ({BUILD_PLUGIN_HINT})"
    return None


# ---------------------------------------------------------------------------------------------- one case


def run_once(prepared: Prepared) -> None:
    """One run, returned from only when its output is ready: what measure() times."""
    prepared.ready(prepared.fn())


def measure(
    prepared: Prepared, *, runs: int, warmup: int, device: Device, progress: bool, desc: str
) -> tuple[list[float], float, float | None]:
    """(per-run milliseconds, peak memory in MiB: CUDA allocator peak or peak RSS, CPU: RSS before)."""
    import torch
    from tqdm import tqdm

    cpu_memory = CpuPeakMemory() if device == "cpu" else None
    for _ in range(warmup):
        run_once(prepared)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    elif cpu_memory is not None:
        cpu_memory.start()
    before = vm_rss_kib()
    times: list[float] = []
    for _ in tqdm(range(runs), desc=desc, disable=not progress, leave=False):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            # The readiness step sits inside the events: they order only with the current stream's work,
            # the step covers any stream (at the cost of one host round trip, microseconds, per run).
            start.record()
            run_once(prepared)
            end.record()
            end.synchronize()
            times.append(float(start.elapsed_time(end)))
        else:
            t0 = time.perf_counter()
            run_once(prepared)
            times.append((time.perf_counter() - t0) * 1000)
    if device == "cuda":
        return times, torch.cuda.max_memory_allocated() / 2**20, None
    assert cpu_memory is not None
    return times, cpu_memory.peak_mib(), None if before is None else before / 1024


def run_case(
    model: ESCBase, backend: str, dtype: Precision, options: BenchmarkOptions, *, progress: bool = False
) -> CaseResult:
    scale = model.config.scale
    h, w = options.input_size(scale)
    result = CaseResult(backend, scale, dtype, (h, w), (h * scale, w * scale), "ok")
    reason = skip_reason(backend, options.device, plugin=options.plugin)
    if reason:
        result.status, result.reason = "skipped", reason
        return result
    if min(h, w) < model.config.min_side:
        result.status = "skipped"
        result.reason = f"input {format_size((h, w))} is below the model's minimum side {model.config.min_side}"
        return result
    shape = (1, 3, h, w)
    try:
        if backend.startswith("eager-"):
            prepared = prepare_eager(model, backend, dtype, options.device, shape, options.calibration)
        elif backend in ORT_GRAPHS:
            prepared = prepare_onnxruntime(
                model,
                dtype,
                options.device,
                shape,
                options.calibration,
                graph=ORT_GRAPHS[backend],
                threads=options.threads,
            )
        else:
            prepared = prepare_tensorrt(model, dtype, shape, options)
        times, peak, before = measure(
            prepared,
            runs=options.runs,
            warmup=options.warmup,
            device=options.device,
            progress=progress,
            desc=result.label,
        )
    except Exception as exc:  # a backend that cannot run a case is reported, not fatal
        first = (str(exc).strip().splitlines() or [""])[0]
        result.status, result.reason = "error", f"{type(exc).__name__}: {first}"
        return result
    result.times_ms, result.detail, result.memory_before_mib = times, prepared.detail, before
    if prepared.fixed_memory_mib is not None:
        result.memory_mib, result.memory_kind = prepared.fixed_memory_mib, prepared.memory_kind
    else:
        result.memory_mib = peak
        result.memory_kind = prepared.memory_kind or (
            "torch.cuda.max_memory_allocated" if options.device == "cuda" else CpuPeakMemory().kind
        )
    return result


def run_benchmark(
    options: BenchmarkOptions,
    *,
    models: dict[int, ESCBase] | None = None,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> list[CaseResult]:
    """Every (scale, dtype, backend) case, in that order."""
    models = models if models is not None else build_models(options)
    if options.threads is not None:
        import torch

        torch.set_num_threads(options.threads)  # the process's; ONNX Runtime's sessions take theirs in prepare
    results = []
    for scale in sorted(models):
        for dtype in options.dtypes:
            for backend in options.backends:
                case = run_case(models[scale], backend, dtype, options, progress=progress)
                log(format_case(case))
                results.append(case)
    return results


def format_case(case: CaseResult) -> str:
    if case.status != "ok":
        return f"{case.label}: {case.status}: {case.reason}"
    memory = f"{case.memory_mib:.0f} MiB" if case.memory_mib is not None else "-"
    return f"{case.label}: median {case.median_ms:.2f} ms over {len(case.times_ms)} runs, memory {memory}"


def table_rows(cases: Sequence[CaseResult]) -> list[list[str]]:
    """Header plus one row per case: the printed and Markdown table share it."""
    rows = [["backend", "scale", "dtype", "input", "median ms", "mean ms", "p90 ms", "runs", "memory MiB", "status"]]
    for c in cases:
        s = c.summary()
        timed = c.status == "ok"
        rows.append(
            [
                c.backend,
                f"x{c.scale}",
                c.dtype,
                format_size(c.input_size),
                f"{s['median_ms']:.2f}" if timed else "-",
                f"{s['mean_ms']:.2f}" if timed else "-",
                f"{s['p90_ms']:.2f}" if timed else "-",
                str(s["runs"]) if timed else "-",
                f"{c.memory_mib:.0f}" if c.memory_mib is not None else "-",
                "ok" if timed else f"{c.status}: {c.reason}",
            ]
        )
    return rows
