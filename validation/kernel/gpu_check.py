"""The fused kernel's GPU-only checks that fit a short slot: the large-offset case and per-call / graph timings.

- Large offsets: a batch-2, 192 x 2040 x 2872 fp16 qkv map (4.5 GB, plane offsets past 2^31 elements in the
  batch), window 32, 4 heads; the bottom-right window (rows and columns reflected) must equal, bitwise, a
  separate run on the crop that holds it (the reflect padding of the crop is that of the map).
- Timings of one ESC attention layer (dim 64, 4 heads, window 32, fp16) at the qkv maps 640x360 and 320x180:
  the fused kernel, compiled FlexAttention and SDPA (esc.attention's map-to-map functions), each by CUDA events
  per call (median) and by CUDA-graph replay (a graph of `--graph-calls` calls, replayed, time per call), the
  calls rotating over input maps that together exceed twice the L2 cache; against the exp floor at the SM clock
  nvidia-smi reads during the timed calls (idle, the clock is a fraction of that).

    python validation/kernel_gpu_check.py --output-dir reports/gpu [--iters 50]

Writes kernel-gpu-check.json and kernel-gpu-check.md there. Exits 2 with one line where no CUDA device exists,
1 if the large-offset check fails.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from esc_deploy.common.command import ArgumentParser, error
from esc_deploy.common.files import atomic_write_text
from esc_deploy.validation.kernel.benchmark import (
    BACKENDS,
    CASES,
    SfuAssumption,
    _Spec,
    input_maps,
    machine,
    rotating,
    time_cuda,
)
from esc_deploy.validation.machine import SmClockSampler, nvidia_smi_query

LARGE_SHAPE = (2, 192, 2040, 2872)  # (batch, 3 * dim, height, width)
LARGE_HEADS = 4
WINDOW = 32


def large_offset_check(seed: int = 0) -> dict[str, object]:
    """The bottom-right window of the large map against a separate run on its crop (bitwise)."""
    from esc.fused_attention import fused_window_attention

    b, c3, h, w = LARGE_SHAPE
    generator = torch.Generator(device="cuda").manual_seed(seed)
    qkv = torch.randn(b, c3, h, w, device="cuda", dtype=torch.float16, generator=generator)
    table = torch.randn(LARGE_HEADS, (2 * WINDOW - 1) ** 2, device="cuda", generator=generator)
    full = fused_window_attention(qkv, table, LARGE_HEADS, WINDOW)
    top, left = (h - 1) // WINDOW * WINDOW, (w - 1) // WINDOW * WINDOW  # the last window's corner
    crop = qkv[:, :, top:, left:].contiguous()
    alone = fused_window_attention(crop, table, LARGE_HEADS, WINDOW)
    corner = full[:, :, top:, left:]
    difference = (corner.float() - alone.float()).abs().max().item()
    del qkv, full
    torch.cuda.empty_cache()
    return {
        "qkv": list(LARGE_SHAPE),
        "window": WINDOW,
        "crop": [top, left, h - top, w - left],
        "bitwise_equal": bool(torch.equal(corner, alone)),
        "max_abs_difference": difference,
        "finite": bool(torch.isfinite(corner).all().item()),
    }


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
    return time_cuda(lambda: graph.replay(), warmup=2, iters=replays) / calls  # type: ignore[arg-type,return-value]


def _failure(error: Exception) -> str:
    """A failed timing as one table cell: the error's type and first 160 characters, on one line, no pipes."""
    text = " ".join(f"{type(error).__name__}: {error}".split()).replace("|", "/")
    return f"failed: {text[:160]}"


def run_timings(iters: int, graph_calls: int) -> tuple[list[dict[str, object]], SfuAssumption]:
    """Per case and backend: ms per call by events and by graph replay, and the floor at the clock read meanwhile."""
    from esc.attention import get_attention

    sms = torch.cuda.get_device_properties(0).multi_processor_count
    generator = torch.Generator(device="cuda").manual_seed(0)
    rows: list[dict[str, object]] = []
    with SmClockSampler() as clock:
        for case in CASES:
            maps = input_maps(case, generator)
            table = torch.randn(case.heads, (2 * case.window - 1) ** 2, device="cuda", generator=generator)
            spec = _Spec(table, case.heads, case.window)
            row: dict[str, object] = {"case": case.name, "qkv": f"{case.height}x{case.width}", "maps": len(maps)}
            with torch.inference_mode():
                for backend in BACKENDS:
                    call = rotating([functools.partial(get_attention(backend), spec, qkv) for qkv in maps])
                    try:
                        call()
                        row[f"{backend} ms/call"] = round(time_cuda(call, warmup=5, iters=iters), 4)
                    except Exception as error:  # a backend that fails is reported, the others still run
                        row[f"{backend} ms/call"] = _failure(error)
                    try:
                        row[f"{backend} ms/call (graph)"] = round(time_graph(call, graph_calls, max(5, iters // 10)), 4)
                    except Exception as error:
                        row[f"{backend} ms/call (graph)"] = _failure(error)
            rows.append(row)
    sfu = SfuAssumption().at_clock(clock)
    for case, row in zip(CASES, rows, strict=True):
        floor = sfu.floor_ms(case.exponentials, sms)
        row["exp floor ms"] = round(floor, 4)
        for timing in ("ms/call", "ms/call (graph)"):
            fused, flex = row.get(f"fused {timing}"), row.get(f"flex {timing}")
            if isinstance(fused, float):
                row[f"fused / floor ({timing})"] = round(fused / floor, 2)
                if isinstance(flex, float):
                    row[f"flex / fused ({timing})"] = round(flex / fused, 2)
    return rows, sfu


def render(result: dict[str, object]) -> str:
    rows = result["timings"]
    assert isinstance(rows, list)
    lines = ["# Fused kernel: GPU check", "", "## Machine", ""]
    lines += [f"- {key}: {value}" for key, value in dict(result["machine"]).items()]  # type: ignore[call-overload]
    lines += ["", "## Large offsets", "", f"`{json.dumps(result['large_offset'])}`", "", "## Timings (ms)", ""]
    columns = list(dict.fromkeys(key for row in rows for key in row))  # a failed backend leaves some out
    if rows:
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(str(row.get(key, "")) for key in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output-dir", type=Path, default=Path("reports/gpu"))
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--graph-calls", type=int, default=20)
    parser.add_argument("--skip-large", action="store_true", help="skip the 4.5 GB large-offset case")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        return error("kernel_gpu_check needs a CUDA device; none is available")
    idle = nvidia_smi_query("clocks.sm,clocks.max.sm")
    info = {**machine(), "SM clock MHz before the run / max": " / ".join(idle) if idle else "not read"}
    large: dict[str, object] = {"skipped": True} if args.skip_large else large_offset_check()
    print(f"large offsets: {json.dumps(large)}")
    rows, sfu = run_timings(args.iters, args.graph_calls)
    info["exp floor"] = sfu.describe()
    result: dict[str, object] = {"machine": info, "large_offset": large, "timings": rows}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output_dir / "kernel-gpu-check.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(args.output_dir / "kernel-gpu-check.md", render(result))
    print(render(result))
    return 0 if large.get("skipped") or large.get("bitwise_equal") else 1
