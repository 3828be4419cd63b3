"""Time ESC's window attention: the fused kernel against compiled FlexAttention and SDPA, and the exp floor.

One layer at ESC's shapes (dim 64, 4 heads, window 32, fp16) for a 1280x720 output at x2 and x4, i.e. qkv maps
of 640x360 and 320x180. Every backend runs the whole map-to-map function the model calls (``esc.attention``):
padding, windowing, attention, merging and cropping. Times are medians of CUDA-event timings after a warm-up;
the calls rotate over enough input maps to exceed twice the L2 cache, so that no timing reads a cached input.

The exponential-throughput floor: softmax evaluates one exponential per score, B * heads * nWindows * N * N
per layer (N = w * w), on the special function units; at S ex2 results per clock per SM the floor is
count / (SMs * S * clock). S = 16 (Ampere and Hopper SMs: 4 partitions of 4 MUFU lanes) is an assumption, CUDA does
not report it; the clock is the SM clock nvidia-smi reads during the timed calls (median), since the idle clock
is a fraction of it; the SM count is the device's.

    python validation/kernel_benchmark.py [--warmup 10] [--iters 100] [--output docs/benchmarks.md]

Exits 2 with a one-line message where no CUDA device exists.
"""

from __future__ import annotations

import functools
import itertools
import math
import platform
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from esc_deploy.common.command import ArgumentParser, error
from esc_deploy.common.defaults import DOCS_DIR
from esc_deploy.common.files import atomic_write_text
from esc_deploy.validation.machine import SmClockSampler, nvidia_driver

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
    def windows(self) -> int:
        return math.ceil(self.height / self.window) * math.ceil(self.width / self.window)

    @property
    def exponentials(self) -> int:
        """Exponentials per layer: one per score, B * heads * nWindows * N * N."""
        tokens = self.window * self.window
        return self.batch * self.heads * self.windows * tokens * tokens

    @property
    def matmul_flops(self) -> int:
        """FLOPs of Q K^T and P V per layer: 2 products of N x N x d, 2 FLOPs per multiply-add."""
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


def time_cuda(fn: Callable[[], Tensor], warmup: int, iters: int) -> float:
    """Median milliseconds of ``fn`` by CUDA events, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def machine() -> dict[str, str]:
    props = torch.cuda.get_device_properties(0)
    return {
        "GPU": torch.cuda.get_device_name(0),
        "SMs": str(props.multi_processor_count),
        "compute capability": f"{props.major}.{props.minor}",
        "driver": nvidia_driver() or "unknown",
        "CUDA (torch)": str(torch.version.cuda),
        "torch": torch.__version__,
        "Python": platform.python_version(),
    }


def run_benchmark(
    warmup: int, iters: int, sfu: SfuAssumption, read_clock: bool = True
) -> tuple[list[dict[str, str]], SfuAssumption]:
    """One row per case: exp count, floor and the median time of each backend (ms); and the floor's rate and
    clock: `sfu`'s rate at the SM clock read during the timed calls (or `sfu` as it is, without `read_clock`)."""
    from esc.attention import get_attention

    sms = torch.cuda.get_device_properties(0).multi_processor_count
    generator = torch.Generator(device="cuda").manual_seed(0)
    measured: list[tuple[Case, dict[str, float], float, int]] = []
    with SmClockSampler() as clock:
        for case in CASES:
            maps = input_maps(case, generator)
            table = torch.randn(case.heads, (2 * case.window - 1) ** 2, device="cuda", generator=generator)
            spec = _Spec(table, case.heads, case.window)
            outputs: dict[str, Tensor] = {}
            times: dict[str, float] = {}
            with torch.inference_mode():
                for backend in BACKENDS:
                    calls = [functools.partial(get_attention(backend), spec, qkv) for qkv in maps]
                    outputs[backend] = calls[0]()
                    times[backend] = time_cuda(rotating(calls), warmup, iters)
            difference = (outputs["fused"].float() - outputs["sdpa"].float()).abs().max().item()
            measured.append((case, times, difference, len(maps)))
    if read_clock:
        sfu = sfu.at_clock(clock)
    rows = []
    for case, times, difference, count in measured:
        floor = sfu.floor_ms(case.exponentials, sms)
        rows.append(
            {
                "case": case.name,
                "qkv": f"{case.batch}x{3 * case.dim}x{case.height}x{case.width}",
                "input maps": str(count),
                "windows": str(case.windows),
                "exponentials": f"{case.exponentials:.3e}",
                "exp floor ms": f"{floor:.3f}",
                **{f"{backend} ms": f"{times[backend]:.3f}" for backend in BACKENDS},
                "fused / floor": f"{times['fused'] / floor:.2f}x",
                "flex / fused": f"{times['flex'] / times['fused']:.2f}x",
                "max |fused - sdpa|": f"{difference:.2e}",
            }
        )
    return rows, sfu


def replace_section(text: str, section: str) -> str:
    """`text` with its marked GPU section replaced by `section`, which goes after the title where there is none."""
    from esc_deploy.validation.kernel.sass import doc_section

    old = doc_section(text, SECTION_BEGIN, SECTION_END)
    if old:
        return text.replace(old, section)
    title, _, rest = text.partition("\n")
    return f"{title}\n\n{section}\n\n{rest.lstrip()}".rstrip() + "\n"


def render(rows: Sequence[dict[str, str]], info: dict[str, str], warmup: int, iters: int, sfu: SfuAssumption) -> str:
    case = CASES[0]
    lines = [
        "## Window attention on the GPU",
        "",
        "Generated by `python validation/kernel_benchmark.py`, which replaces only this section; do not edit by hand.",
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
        "under torch.compile, `sdpa` = scaled_dot_product_attention with the expanded (heads, N, N) bias.",
        f"- Median of {iters} CUDA-event timings after {warmup} warm-up calls; the calls rotate over `input maps` "
        "random maps, together more than twice the L2 cache.",
        "",
        "### Results (ms)",
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|" + "---|" * len(rows[0]),
        *("| " + " | ".join(row.values()) + " |" for row in rows),
        "",
        "### Exponential-throughput floor",
        "",
        "Softmax needs one exponential per score: B * heads * nWindows * N * N per layer, N = w * w = "
        f"{case.window * case.window}. The floor is that count divided by the SFU exp throughput, "
        f"SMs * ex2/clock/SM * clock: here {sfu.describe()}. The rate is an assumption (Ampere and Hopper SMs: "
        "4 partitions of 4 MUFU lanes; CUDA does not report it; option --sfu-ex2-per-clock); the SM count is the "
        "device's. The floor ignores the matrix products, the bias lookups and memory traffic, so real kernels "
        "stay above it.",
        "",
        "### Why the fused kernel uses tensor cores in fp16",
        "",
        f"The matrix products add {case.matmul_flops / 1e9:.1f} GFLOP per layer at {case.name} "
        "(4 * N * N * d per window and head). On CUDA cores (H100 SXM: ~67 TFLOP/s fp32) that alone takes "
        f"~{case.matmul_flops / 67e12 * 1e3:.2f} ms, above 3x the exp floor, so the fp16 path runs them on tensor "
        "cores (`mma.sync.m16n8k16`, fp32 accumulation; engines/plugin/escWindowAttentionMma.cuh) and leaves the "
        "exponentials as the bound. fp32 tensors use the SIMT body.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--sfu-clock-ghz", type=float, default=None, help="the floor's SM clock (default: read during the timed calls)"
    )
    parser.add_argument("--sfu-ex2-per-clock", type=int, default=SfuAssumption.ex2_per_clock_per_sm)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        return error("kernel_benchmark needs a CUDA device; none is available")
    sfu = SfuAssumption(args.sfu_ex2_per_clock)
    if args.sfu_clock_ghz:
        sfu = SfuAssumption(args.sfu_ex2_per_clock, args.sfu_clock_ghz, "given by --sfu-clock-ghz")
    rows, sfu = run_benchmark(args.warmup, args.iters, sfu, read_clock=not args.sfu_clock_ghz)
    # Only this section changes: the rest (SASS budget, CPU tables) comes from the file replaced or else from
    # docs/benchmarks.md.
    base = next((path.read_text() for path in (args.output, DEFAULT_OUTPUT) if path.exists()), f"{TITLE}\n")
    section = f"{SECTION_BEGIN}\n{render(rows, machine(), args.warmup, args.iters, sfu).rstrip()}\n{SECTION_END}"
    atomic_write_text(args.output, replace_section(base, section))
    print(f"wrote {args.output}")
    return 0
