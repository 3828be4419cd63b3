"""Time ESC's window attention: the fused kernel against compiled FlexAttention and SDPA, and the exp floor.

One layer at ESC's shapes (dim 64, 4 heads, window 32, fp16) for a 1280x720 output at x2 and x4, i.e. qkv maps
of 640x360 and 320x180. Every backend runs the whole map-to-map function the model calls (``esc.attention``):
padding, windowing, attention, merging and cropping. Times are medians of CUDA-event timings (calls queued back
to back) and of CUDA-graph replays, after a warm-up; the calls rotate over enough input maps to exceed twice the
L2 cache, so that no timing reads a cached input.

The exponential-throughput floor: softmax evaluates one exponential per key for each output query,
B * heads * H * W * N per layer (N = w * w), on the special function units; at S ex2 results per clock per SM the
floor is count / (SMs * S * clock). S = 16 (Ampere and Hopper SMs: 4 partitions of 4 MUFU lanes) is an
assumption, CUDA does not report it; the clock is the median SM clock nvidia-smi reads while the fused kernel runs
back to back (idle, the clock is a fraction of that); the SM count is the device's.

    python validation/kernel_benchmark.py [--warmup 10] [--iters 100] [--graph-calls 20] [--output docs/benchmarks.md]

Exits 2 with a one-line message where no CUDA device exists.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from esc_deploy.common.command import ArgumentParser, error
from esc_deploy.common.defaults import DOCS_DIR
from esc_deploy.common.files import atomic_write_text
from esc_deploy.validation.machine import SmClockSampler, nvidia_driver, nvidia_smi_query

DEFAULT_OUTPUT = DOCS_DIR / "benchmarks.md"
TITLE = "# Window-attention benchmarks"
SECTION_BEGIN = "<!-- kernel_benchmark: begin -->"
SECTION_END = "<!-- kernel_benchmark: end -->"
BACKENDS = ("fused", "flex", "sdpa")


@dataclass(frozen=True)
class Case:
    """One attention layer: qkv map of (batch, 3 * dim, height, width)."""

    name: str
    height: int
    width: int
    batch: int = 1
    dim: int = 64
    heads: int = 4
    window: int = 32

    @property
    def exponentials(self) -> int:
        """Exponentials a layer needs: one per score of an output pixel's query, B * heads * H * W * N.

        Queries in the padding rows and columns of the last windows are cropped away (the kernel skips blocks of
        them), so the floor does not count them: at 640x360, 9.44e8 instead of 240 windows * N * N = 1.007e9."""
        return self.batch * self.heads * self.height * self.width * self.window * self.window

    @property
    def matmul_flops(self) -> int:
        """FLOPs of Q K^T and P V for the output queries: 2 products of N keys x d, 2 FLOPs per multiply-add."""
        return 4 * self.exponentials * (self.dim // self.heads)


CASES = (
    Case("1280x720 output, x2", height=360, width=640),
    Case("1280x720 output, x4", height=180, width=320),
)


@dataclass(frozen=True)
class SfuAssumption:
    """Exp throughput of the special function units (the rate is not queryable from CUDA) at one SM clock."""

    ex2_per_clock_per_sm: int = 16
    clock_ghz: float = 1.83  # an H100 SXM's typical boost, used only where no clock could be read
    clock_source: str = "assumed (H100 SXM boost)"

    def floor_ms(self, exponentials: int, sms: int) -> float:
        return exponentials / (sms * self.ex2_per_clock_per_sm * self.clock_ghz * 1e9) * 1e3

    def at_clock(self, sampler: SmClockSampler) -> SfuAssumption:
        """This rate at the clock the sampler read under load, or unchanged where it read none."""
        if sampler.median is None:
            return self
        return SfuAssumption(self.ex2_per_clock_per_sm, sampler.median / 1e3, f"read: {sampler.describe()}")

    def describe(self) -> str:
        return f"{self.ex2_per_clock_per_sm} ex2/clock/SM at {self.clock_ghz:.3f} GHz ({self.clock_source})"


@dataclass(frozen=True)
class MeasureOptions:
    warmup: int = 10
    iters: int = 100
    graph_calls: int = 20  # calls per CUDA graph
    ex2_per_clock_per_sm: int = SfuAssumption.ex2_per_clock_per_sm
    clock_ghz: float | None = None  # the floor's SM clock; None: read while the fused kernel runs

    def sfu(self) -> SfuAssumption:
        if self.clock_ghz is None:
            return SfuAssumption(self.ex2_per_clock_per_sm)
        return SfuAssumption(self.ex2_per_clock_per_sm, self.clock_ghz, "given by --sfu-clock-ghz")


class _Spec:
    """The attributes of one attention module that a backend of ``esc.attention`` reads."""

    def __init__(self, table: Tensor, num_heads: int, window_size: int) -> None:
        from esc.attention import expand_bias, relative_position_indices

        self.num_heads = num_heads
        self.window_size = window_size
        self.relative_position_bias = torch.nn.Parameter(table, requires_grad=False)
        index_h, index_w = relative_position_indices(window_size)
        self._bias = expand_bias(table, index_h.to(table.device), index_w.to(table.device))

    def expanded_bias(self) -> Tensor:
        return self._bias


def input_maps(case: Case, generator: torch.Generator) -> list[Tensor]:
    """Random fp16 qkv maps of the case, as many as exceed twice the L2 cache together (at least one)."""
    l2_bytes = torch.cuda.get_device_properties(0).L2_cache_size
    map_bytes = case.batch * 3 * case.dim * case.height * case.width * 2
    count = max(1, math.ceil(2 * l2_bytes / map_bytes))
    shape = (case.batch, 3 * case.dim, case.height, case.width)
    return [torch.randn(shape, device="cuda", generator=generator).half() for _ in range(count)]


def rotating(calls: Sequence[Callable[[], Tensor]]) -> Callable[[], Tensor]:
    """One call that runs `calls` in turn, a different one each time."""
    turn = itertools.cycle(calls)
    return lambda: next(turn)()


def time_cuda(fn: Callable[[], object], warmup: int, iters: int) -> float:
    """Median milliseconds per call of ``fn`` by a CUDA event pair around each call, after ``warmup`` calls.

    The calls are queued back to back (one synchronisation at the end), as a model runs them: a call's time is
    the device's, not the host's launch latency after an idle gap."""
    for _ in range(warmup):
        fn()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(start.elapsed_time(end) for start, end in events)


def time_graph(fn: Callable[[], Tensor], calls: int, replays: int) -> float:
    """Milliseconds per call of `fn` captured `calls` times into one CUDA graph, median over `replays` replays."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    return time_cuda(graph.replay, warmup=2, iters=replays) / calls


@functools.cache  # a process sees one device 0
def nvidia_smi_gpu() -> str:
    """nvidia-smi's id of CUDA device 0: its UUID (nvidia-smi's indices follow the PCI bus, not CUDA's order or
    CUDA_VISIBLE_DEVICES), else index 0 where nvidia-smi does not answer to it."""
    uuid = getattr(torch.cuda.get_device_properties(0), "uuid", None)
    return f"GPU-{uuid}" if uuid is not None and nvidia_smi_query("uuid", f"GPU-{uuid}") else "0"


def clock_under_load(fn: Callable[[], object], seconds: float = 1.5) -> SmClockSampler:
    """The SM clock nvidia-smi reads while `fn` runs back to back for about `seconds` (idle, the clock is a
    fraction of the boost clock: 345 against 1980 MHz on an H200 here)."""
    fn()
    torch.cuda.synchronize()
    with SmClockSampler(period=0.1, gpu=nvidia_smi_gpu()) as clock:
        until = time.perf_counter() + seconds
        while time.perf_counter() < until:
            fn()  # the launch queue fills, so the host waits on the device and the GPU stays busy
        torch.cuda.synchronize()
    return clock


def machine() -> dict[str, str]:
    props = torch.cuda.get_device_properties(0)
    return {
        "GPU": torch.cuda.get_device_name(0),
        "SMs": str(props.multi_processor_count),
        "L2 cache MiB": f"{props.L2_cache_size / 2**20:.0f}",
        "compute capability": f"{props.major}.{props.minor}",
        "driver": nvidia_driver() or "unknown",
        "max SM clock MHz": (nvidia_smi_query("clocks.max.sm", nvidia_smi_gpu()) or ["unknown"])[0],
        "CUDA (torch)": str(torch.version.cuda),
        "torch": torch.__version__,
        "Python": platform.python_version(),
    }


def failure_cell(error: Exception) -> str:
    """A failed backend as one table cell: the error's type and first 160 characters, on one line (table() escapes
    any pipe)."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return f"failed: {text[:160]}"


def measure(options: MeasureOptions) -> Iterator[dict[str, str]]:
    """One row per case, yielded as soon as it is measured (a caller with a time limit keeps what it got): the exp
    floor at the SM clock read under the fused kernel's load (or the one given), and each backend's median ms per
    call by CUDA events and by graph replay; a backend that fails gets the error in its cells, the others still run."""
    from esc.attention import get_attention

    sms = torch.cuda.get_device_properties(0).multi_processor_count
    generator = torch.Generator(device="cuda").manual_seed(0)
    for case in CASES:
        maps = input_maps(case, generator)
        table = torch.randn(case.heads, (2 * case.window - 1) ** 2, device="cuda", generator=generator)
        spec = _Spec(table, case.heads, case.window)
        outputs: dict[str, Tensor] = {}
        times: dict[str, float | str] = {}  # "name" and "name graph": ms, or the failure
        sfu = options.sfu()
        with torch.inference_mode():
            for backend in BACKENDS:
                call = rotating([functools.partial(get_attention(backend), spec, qkv) for qkv in maps])
                try:
                    outputs[backend] = call()  # compiles (flex) and loads (fused) outside the timings
                    times[backend] = time_cuda(call, options.warmup, options.iters)
                except Exception as error:  # a backend that fails is reported, the others still run
                    times[backend] = times[f"{backend} graph"] = failure_cell(error)
                    continue
                try:
                    times[f"{backend} graph"] = time_graph(call, options.graph_calls, max(5, options.iters // 10))
                except Exception as error:
                    times[f"{backend} graph"] = failure_cell(error)
                if backend == "fused" and options.clock_ghz is None:
                    sfu = sfu.at_clock(clock_under_load(call))
        floor = sfu.floor_ms(case.exponentials, sms)
        row = {
            "case": case.name,
            "qkv": f"{case.batch}x{3 * case.dim}x{case.height}x{case.width}",
            "input maps": str(len(maps)),
            "SM clock MHz": f"{sfu.clock_ghz * 1e3:.0f}",
            "exponentials": f"{case.exponentials:.3e}",
            "exp floor ms": f"{floor:.3f}",
        }
        for name, value in times.items():
            row[f"{name} ms"] = f"{value:.3f}" if isinstance(value, float) else value
        fused, flex = times.get("fused graph"), times.get("flex graph")
        if isinstance(fused, float):
            row["fused / floor"] = f"{fused / floor:.2f}x"
            if isinstance(flex, float):
                row["flex / fused"] = f"{flex / fused:.2f}x"
        if "fused" in outputs and "sdpa" in outputs:
            row["max abs(fused - sdpa)"] = (
                f"{(outputs['fused'].float() - outputs['sdpa'].float()).abs().max().item():.2e}"
            )
        row["clock"] = sfu.clock_source
        yield row


def table(rows: Sequence[dict[str, str]], skip: Sequence[str] = ()) -> list[str]:
    """A markdown table of `rows` over the union of their columns (a failed backend leaves some out)."""
    columns = [key for key in dict.fromkeys(key for row in rows for key in row) if key not in skip]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return [line(columns), "|" + "---|" * len(columns), *(line([row.get(key, "") for key in columns]) for row in rows)]


def replace_section(text: str, section: str) -> str:
    """`text` with its marked GPU section replaced by `section`, which goes after the title where there is none."""
    from esc_deploy.validation.kernel.sass import doc_section

    old = doc_section(text, SECTION_BEGIN, SECTION_END)
    if old:
        return text.replace(old, section)
    title, _, rest = text.partition("\n")
    return f"{title}\n\n{section}\n\n{rest.lstrip()}".rstrip() + "\n"


def render(rows: Sequence[dict[str, str]], info: dict[str, str], options: MeasureOptions) -> str:
    """The GPU section of docs/benchmarks.md."""
    case = CASES[0]
    lines = [
        "## Window attention on the GPU",
        "",
        "Generated by `python validation/kernel_benchmark.py` (or `bash validation/gpu_check.sh`), which replaces "
        "only this section; do not edit by hand.",
        "",
        "### Machine",
        "",
        *(f"- {key}: {value}" for key, value in info.items()),
        "",
        "### Setup",
        "",
        f"- One ESC attention layer: dim {case.dim}, {case.heads} heads "
        f"(head size {case.dim // case.heads}), window {case.window}, batch {case.batch}, "
        "fp16 qkv, fp32 bias table.",
        "- Backends run the whole map-to-map function of `esc.attention` (pad, window, attend, merge, crop): "
        "`fused` = this project's kernel (engines/plugin), `flex` = FlexAttention with the bias as score_mod "
        "under torch.compile (the model's flex backend: static sequence length, the window count dynamic), `sdpa` = "
        "scaled_dot_product_attention with the expanded (heads, N, N) bias.",
        f"- `ms`: median of {options.iters} calls queued back to back, each between two CUDA events, after "
        f"{options.warmup} warm-up calls. `graph ms`: {options.graph_calls} calls captured in one CUDA graph, "
        "median replay time per call (no launch gaps). The calls rotate over `input maps` random maps, together "
        "more than twice the L2 cache.",
        "- `fused / floor` and `flex / fused` compare graph times.",
        "",
        "### Results (ms)",
        "",
        *table(rows, skip=("clock",)),
        "",
        "### Exponential-throughput floor",
        "",
        "Softmax needs one exponential per score of every output query: B * heads * H * W * N per layer, N = w * w "
        f"= {case.window * case.window} (the queries in the padding rows of the last windows are cropped away and "
        "not counted). The floor is that count divided by the SFU exp throughput, SMs * ex2/clock/SM * clock: "
        f"{options.ex2_per_clock_per_sm} ex2/clock/SM, an assumption (Ampere and Hopper SMs: 4 partitions of 4 MUFU "
        "lanes; CUDA does not report it; option --sfu-ex2-per-clock), the device's SM count, and per case the SM "
        "clock in the table:",
        "",
        *(f"- {row['case']}: {row['clock']}" for row in rows),
        "",
        "The floor ignores the matrix products, the bias lookups and memory traffic, so real kernels stay above it.",
        "",
        "### Why the fused kernel uses tensor cores in fp16",
        "",
        f"The matrix products add {case.matmul_flops / 1e9:.1f} GFLOP per layer at {case.name} "
        "(4 * N * d per output query and head). On CUDA cores (H100 SXM: ~67 TFLOP/s fp32) that alone takes "
        f"~{case.matmul_flops / 67e12 * 1e3:.2f} ms, above 3x the exp floor, so the fp16 path runs them on tensor "
        "cores (`mma.sync.m16n8k16`, fp32 accumulation; engines/plugin/escWindowAttentionMma.cuh) and leaves the "
        "exponentials as the bound. fp32 tensors use the SIMT body.",
        "",
    ]
    return "\n".join(lines)


def write_section(output: Path, rows: Sequence[dict[str, str]], options: MeasureOptions) -> None:
    """Replace the GPU section of `output` (atomically); the rest comes from it, else from docs/benchmarks.md."""
    base = next((path.read_text() for path in (output, DEFAULT_OUTPUT) if path.exists()), f"{TITLE}\n")
    section = f"{SECTION_BEGIN}\n{render(rows, machine(), options).rstrip()}\n{SECTION_END}"
    atomic_write_text(output, replace_section(base, section))


def add_measure_options(parser: ArgumentParser) -> None:
    defaults = MeasureOptions()
    parser.add_argument("--warmup", type=int, default=defaults.warmup)
    parser.add_argument("--iters", type=int, default=defaults.iters)
    parser.add_argument("--graph-calls", type=int, default=defaults.graph_calls, help="calls per CUDA graph")
    parser.add_argument("--sfu-clock-ghz", type=float, help="the floor's SM clock (default: read under load)")
    parser.add_argument("--sfu-ex2-per-clock", type=int, default=defaults.ex2_per_clock_per_sm)


def measure_options(args: argparse.Namespace) -> MeasureOptions:
    return MeasureOptions(args.warmup, args.iters, args.graph_calls, args.sfu_ex2_per_clock, args.sfu_clock_ghz)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_measure_options(parser)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        return error("kernel_benchmark needs a CUDA device; none is available")
    options = measure_options(args)
    rows = list(measure(options))
    write_section(args.output, rows, options)
    print("\n".join(table(rows)))
    print(f"wrote {args.output}")
    return 0
