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
onnxruntime-plugin (the default export: ONNX Runtime runs the plugin node's function body), tensorrt.
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

if TYPE_CHECKING:
    import torch

    from esc.models import ESCBase
    from esc_deploy.validation.accuracy.fp16 import Fp16Context
    from esc_deploy.validation.backends import Graph

Device = Literal["cuda", "cpu"]
BACKENDS = ("eager-naive", "eager-sdpa", "eager-flex", "eager-fused", "onnxruntime", "onnxruntime-plugin", "tensorrt")
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


# ---------------------------------------------------------------------------------------------- memory


class CpuPeakMemory:
    """Peak resident set size: /proc/self/status VmHWM, reset through clear_refs; else getrusage."""

    def __init__(self) -> None:
        self.resettable = self._reset()

    @staticmethod
    def _reset() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return _vm_hwm_kib() is not None
        except OSError:
            return False

    def start(self) -> None:
        if self.resettable:
            self._reset()

    def peak_mib(self) -> float:
        if self.resettable:
            value = _vm_hwm_kib()
            if value is not None:
                return value / 1024
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    @property
    def kind(self) -> str:
        return "peak RSS (VmHWM, reset per case)" if self.resettable else "peak RSS of the process (getrusage)"


def _proc_status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _vm_hwm_kib() -> int | None:
    return _proc_status_kib("VmHWM")


def _vm_rss_kib() -> int | None:
    return _proc_status_kib("VmRSS")


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
        from esc.fused_attention import LIBRARY_ENV

        cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
        if not (os.environ.get(LIBRARY_ENV) or shutil.which("nvcc") or (Path(cuda_home) / "bin" / "nvcc").is_file()):
            return f"needs nvcc to compile the fused kernel, or {LIBRARY_ENV} naming a prebuilt library"
    if backend in ("onnxruntime", "onnxruntime-plugin"):
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

Fn = Callable[[], Any]
Ready = Callable[[Any], None]  # given fn's output, returns once that output is ready


def host_ready(_output: Any) -> None:
    """For calls that return finished outputs: eager torch on the CPU, ONNX Runtime (numpy outputs)."""


def cuda_ready(device: torch.device) -> Ready:
    """Waits for every stream of ``device``: its launches (eager torch, TensorRT's enqueue) are asynchronous."""
    import torch

    def ready(_output: Any) -> None:
        torch.cuda.synchronize(device)

    return ready


@dataclass
class Prepared:
    fn: Fn
    ready: Ready  # required, so that no backend is timed without its readiness step
    memory_kind: str
    detail: str
    fixed_memory_mib: float | None = None  # TensorRT: the engine's device memory


_FP16_CONTEXTS: dict[tuple[str, str], Fp16Context] = {}


def fp16_context(model: ESCBase, calibration: str) -> Fp16Context:
    """The fp16 rule's calibration of ``model``, made once per model and choice (as in a parity run)."""
    from esc_deploy.export.onnx_graph.calibration_set import calibration_for
    from esc_deploy.validation.accuracy.fp16 import Fp16Context
    from esc_deploy.validation.backends import model_fingerprint

    key = (model_fingerprint(model), calibration)
    if key not in _FP16_CONTEXTS:
        _FP16_CONTEXTS[key] = Fp16Context(model, calibration_for(calibration, model.config), calibration)
    return _FP16_CONTEXTS[key]


def _prepare_eager(
    model: ESCBase, backend: str, dtype: Precision, device: Device, shape: tuple[int, ...], calibration: str
) -> Prepared:
    import copy

    import torch

    torch_dtype = torch.float16 if dtype == "fp16" else torch.float32
    if dtype == "fp16":
        net = fp16_context(model, calibration).mixed_model()[0].to(device).eval()
    else:
        net = copy.deepcopy(model).to(device, torch_dtype).eval()
    net.set_attention(backend.removeprefix("eager-"))
    x = torch.rand(shape, device=device, dtype=torch_dtype)

    def fn() -> Any:
        with torch.inference_mode():
            return net(x)

    ready = cuda_ready(x.device) if device == "cuda" else host_ready
    kind = "torch.cuda.max_memory_allocated" if device == "cuda" else ""
    return Prepared(fn, ready, kind, f"eager torch {torch.__version__}, attention {backend.removeprefix('eager-')}")


def _prepare_onnxruntime(
    model: ESCBase,
    dtype: Precision,
    device: Device,
    shape: tuple[int, ...],
    calibration: str,
    *,
    graph_kind: Graph = "native",
) -> Prepared:
    import numpy as np
    import onnxruntime as ort

    from esc_deploy.export.onnx_graph.ort_session import ort_session
    from esc_deploy.validation.backends import export_graphs

    proto = export_graphs(model, [graph_kind])[graph_kind]
    if dtype == "fp16":
        proto = fp16_context(model, calibration).mixed_graph(graph_kind, proto)
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    session = ort_session(proto, providers=providers, arena=True)  # timed: the arena's reuse is part of its speed
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    name = session.get_inputs()[0].name

    def fn() -> Any:
        # Synchronous, the CUDA provider too: run() returns numpy arrays, copied to the host when done.
        return session.run(None, {name: x})

    graph = f"{graph_kind} graph" + (", mixed fp16" if dtype == "fp16" else "")
    detail = f"ONNX Runtime {ort.__version__} ({', '.join(session.get_providers())}), {graph}"
    return Prepared(fn, host_ready, "", detail)


def _prepare_tensorrt(model: ESCBase, dtype: Precision, shape: tuple[int, ...], options: BenchmarkOptions) -> Prepared:
    import torch

    from esc_deploy.export.shape_profile import ShapeProfile
    from esc_deploy.export.trt.from_graph import build_engine_from_graph
    from esc_deploy.serving.engine_runner import EngineRunner
    from esc_deploy.validation.backends import export_graphs

    b, c, h, w = shape
    static = (b, c, h, w)
    built = build_engine_from_graph(
        export_graphs(model, ["plugin"])["plugin"],
        onnx_path=options.work_dir / f"benchmark_x{model.config.scale}.onnx",
        engine=options.work_dir / f"benchmark_x{model.config.scale}_{dtype}_{h}x{w}.engine",
        profile=ShapeProfile(static, static, static),
        precision=dtype,
        plugin=options.plugin,
        calibration=options.calibration,
    )
    # --device cuda is the current CUDA device: the one the engine was built on and measure()'s events use.
    runner = EngineRunner(built.engine, plugin=options.plugin, device=torch.cuda.current_device())
    x = torch.rand(shape, device=runner.device)

    def fn() -> Any:
        return runner(x)  # enqueued on the current stream; returns before the engine has run

    memory = runner.device_memory_bytes / 2**20
    kind = "TensorRT engine device memory (one context)"
    return Prepared(fn, cuda_ready(runner.device), kind, runner.describe(), fixed_memory_mib=memory)


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
    before = _vm_rss_kib()
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
            prepared = _prepare_eager(model, backend, dtype, options.device, shape, options.calibration)
        elif backend in ("onnxruntime", "onnxruntime-plugin"):
            graph_kind: Graph = "plugin" if backend == "onnxruntime-plugin" else "native"
            prepared = _prepare_onnxruntime(
                model, dtype, options.device, shape, options.calibration, graph_kind=graph_kind
            )
        else:
            prepared = _prepare_tensorrt(model, dtype, shape, options)
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
