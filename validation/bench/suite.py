"""Latency and peak memory of ESC per backend, as a library: what is measured and how it is reported
(runner.py runs the cases, validation/benchmark.py is the CLI).

The paper's protocol: a 1280x720 output (input = output / scale), batch 1, a warm-up, then the median
of at least 100 runs timed with CUDA events; peak memory is ``torch.cuda.max_memory_allocated`` (weights,
activations and workspace of the torch backends) or, for TensorRT, the engine's device memory (one
execution context). Without a GPU the same cases run in CPU mode: eager torch and ONNX Runtime on the
CPU, ``time.perf_counter``, peak resident memory from /proc (VmHWM, reset before each case), else
``resource.getrusage`` (the process's lifetime peak). How a run is timed: timing.py.

Interleaved rounds (``rounds`` > 1, CPU mode's default): the cases of one (scale, dtype) are prepared
and warmed up together, then each round runs every case ``runs`` times in turn, so that a noisy
machine slows every backend alike; each case's memory is measured first, in a pass of its own with the
case alone in the process (prepared, warmed up, one run, released). One round is the paper's protocol:
each case prepared, warmed up, timed and released in turn.

Backends: eager-naive, eager-sdpa, eager-flex (compiled FlexAttention: the paper's eager model),
eager-fused (this project's kernel), onnxruntime (the native graph; mixed fp16 for fp16),
onnxruntime-plugin (the default export: ONNX Runtime runs the plugin node's function body),
onnxruntime-opset23 (the native graph at opset 23: one standard Attention node each), tensorrt (the
plugin engine), tensorrt-fused (the plugin-free engine, TensorRT's own fused window attention).
"""

from __future__ import annotations

import os
import shutil
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from esc_deploy.common.defaults import DEFAULT_PLUGIN, DEFAULT_PRESET, DEFAULT_SEED
from esc_deploy.export.precision import Precision, as_precision
from esc_deploy.validation.bench.prepare import ORT_GRAPHS, Device

if TYPE_CHECKING:
    from esc.models import ESCBase

BACKENDS = (
    "eager-naive",
    "eager-sdpa",
    "eager-flex",
    "eager-fused",
    *ORT_GRAPHS,  # onnxruntime, onnxruntime-plugin, onnxruntime-opset23
    "tensorrt",  # the engine with the ESCWindowAttention plugin
    "tensorrt-fused",  # the plugin-free engine: TensorRT's own fused attention (build_engine.py --attention tensorrt)
)
ENGINE_BACKENDS = {"tensorrt": "plugin", "tensorrt-fused": "tensorrt"}  # backend -> build_engine.py --attention
PAPER_RUNS = 100
PAPER_OUTPUT = (720, 1280)  # (height, width): the paper's 1280x720
CPU_ROUNDS = 3  # CPU mode's default: interleaved rounds


@dataclass(frozen=True)
class BenchmarkOptions:
    """Every choice that changes what is measured."""

    backends: tuple[str, ...] = BACKENDS
    output_size: tuple[int, int] = PAPER_OUTPUT  # (height, width), as every size here; the CLI spells it WxH
    scales: tuple[int, ...] = (2, 4)
    dtypes: tuple[Precision, ...] = (Precision.FP16, Precision.FP32)
    runs: int = PAPER_RUNS  # per case and round
    warmup: int = 10
    device: Device = "cpu"
    rounds: int | None = None  # None: CPU_ROUNDS in CPU mode, 1 on CUDA (the paper's protocol)
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
        rounds = self.rounds if self.rounds is not None else 1 if self.device == "cuda" else CPU_ROUNDS
        if rounds < 1:
            raise ValueError(f"rounds: expected a positive integer, found {rounds}")
        object.__setattr__(self, "rounds", rounds)  # the report records the rounds that ran
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
    def round_count(self) -> int:
        assert self.rounds is not None  # set by __post_init__
        return self.rounds

    @property
    def total_runs(self) -> int:
        """Timed runs per case, every round together."""
        return self.round_count * self.runs

    @property
    def protocol(self) -> str:
        """'paper: CUDA events, warm-up 10, median of 100 runs; memory ...' or 'reduced: why; ...'."""
        timer = "CUDA events" if self.device == "cuda" else "time.perf_counter"
        why = [f"fewer than {PAPER_RUNS} runs"] if self.total_runs < PAPER_RUNS else []
        why += ["CPU mode"] if self.device != "cuda" else []
        if self.round_count == 1:
            kind = f"reduced: {', '.join(why)}; " if why else "paper: "
            return f"{kind}{timer}, warm-up {self.warmup}, median of {self.runs} runs; memory over the timed runs"
        kind = f"reduced: {', '.join(why)}; " if why else "interleaved: "  # the paper times each case alone
        runs = f"{self.runs} run{'s' if self.runs > 1 else ''}"
        return (
            f"{kind}{timer}, warm-up {self.warmup}, then {self.round_count} interleaved rounds of {runs} per case "
            f"in turn, median of {self.total_runs} runs, spread: min-max of the round medians; memory in a pass "
            f"before the rounds, each case alone (warm-up {self.warmup}, then one run)"
        )


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
    times_ms: list[float] = field(default_factory=list)  # in the order they ran, round after round
    start_s: list[float] = field(default_factory=list)  # when each run began, seconds after the benchmark began
    rounds: int = 1
    memory_mib: float | None = None
    memory_kind: str = ""
    memory_before_mib: float | None = None  # CPU mode: resident memory when the memory's runs began
    detail: str = ""

    @property
    def label(self) -> str:
        return f"{self.backend} x{self.scale} {self.dtype}"

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.times_ms) if self.times_ms else None

    @property
    def round_medians_ms(self) -> list[float]:
        """The median of each round's runs (every round ran as many)."""
        if not self.times_ms:
            return []
        per_round = len(self.times_ms) // self.rounds
        return [statistics.median(self.times_ms[r * per_round : (r + 1) * per_round]) for r in range(self.rounds)]

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        times = sorted(self.times_ms)
        for key in ("times_ms", "start_s"):
            data.pop(key)
        if times:
            medians = self.round_medians_ms
            data.update(
                median_ms=statistics.median(times),
                mean_ms=statistics.fmean(times),
                min_ms=times[0],
                p90_ms=times[min(len(times) - 1, int(0.9 * len(times)))],
                max_ms=times[-1],
                runs=len(times),
                runs_per_round=len(times) // self.rounds,
                round_medians_ms=medians,
                round_median_min_ms=min(medians),
                round_median_max_ms=max(medians),
                fps=1000.0 / statistics.median(times),
            )
        data["times_ms"] = [round(t, 4) for t in self.times_ms]
        data["start_s"] = [round(t, 4) for t in self.start_s]
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
    if backend in ENGINE_BACKENDS:
        if device != "cuda":  # else it would run on a GPU anyway, timed by the CPU mode's clock
            return f"TensorRT runs on CUDA only, not on device {device}"
        from esc_deploy.export.trt.env import cannot_run_engines

        reason = cannot_run_engines()
        if reason is not None:
            return reason
        if ENGINE_BACKENDS[backend] == "plugin" and not plugin.is_file():
            from esc_deploy.export.trt.plugin import BUILD_PLUGIN_HINT

            return f"plugin library {plugin} not built ({BUILD_PLUGIN_HINT})"
    return None


def format_case(case: CaseResult) -> str:
    if case.status != "ok":
        return f"{case.label}: {case.status}: {case.reason}"
    memory = f"{case.memory_mib:.0f} MiB" if case.memory_mib is not None else "-"
    runs = f"{len(case.times_ms)} runs"
    if case.rounds > 1:
        runs += f" in {case.rounds} rounds (round medians {format_spread(case)} ms)"
    return f"{case.label}: median {case.median_ms:.2f} ms over {runs}, memory {memory}"


def format_spread(case: CaseResult) -> str:
    """'1290.12-1320.40': the lowest and highest round median; '-' for one round or no timings."""
    medians = case.round_medians_ms
    return f"{min(medians):.2f}-{max(medians):.2f}" if case.rounds > 1 and medians else "-"


def table_rows(cases: Sequence[CaseResult]) -> list[list[str]]:
    """Header plus one row per case: the printed and Markdown table share it."""
    header = ["backend", "scale", "dtype", "input", "median ms", "round medians ms", "mean ms", "p90 ms", "runs"]
    rows = [[*header, "memory MiB", "status"]]
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
                format_spread(c) if timed else "-",
                f"{s['mean_ms']:.2f}" if timed else "-",
                f"{s['p90_ms']:.2f}" if timed else "-",
                (f"{c.rounds}x{s['runs_per_round']}" if c.rounds > 1 else str(s["runs"])) if timed else "-",
                f"{c.memory_mib:.0f}" if c.memory_mib is not None else "-",
                "ok" if timed else f"{c.status}: {c.reason}",
            ]
        )
    return rows
