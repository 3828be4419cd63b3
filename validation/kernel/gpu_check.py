"""The fused kernel's GPU-only checks that fit a short slot: the large-offset case and the timings.

- Large offsets: a batch-2, 192 x 2040 x 2872 fp16 qkv map (4.5 GB, offsets past 2^31 elements in the batch),
  window 32, 4 heads. Two windows of the bottom row must equal, bitwise, a separate run on the crop that holds
  each (the crop's reflect padding is that of the map): the bottom-right one (rows and columns reflected: the
  element-load path) and the one left of it (whole 16-byte key groups: the cp.async path).
- Timings of one ESC attention layer (dim 64, 4 heads, window 32, fp16) at the qkv maps 640x360 and 320x180:
  the fused kernel, compiled FlexAttention and SDPA, each by CUDA events per call and by CUDA-graph replay,
  against the exp floor at the SM clock read while the fused kernel runs (validation/kernel/benchmark.py).

    python validation/kernel_gpu_check.py --output-dir reports/gpu [--iters 50] [--doc reports/gpu/benchmarks.md]

Writes kernel-gpu-check.json and kernel-gpu-check.md to the output folder and the GPU section of `--doc` (a
copy of docs/benchmarks.md with that section replaced). Exits 2 with one line where no CUDA device exists, 1 if
the large-offset check fails.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from esc_deploy.common.command import ArgumentParser, error
from esc_deploy.common.files import atomic_write_text
from esc_deploy.validation.kernel.benchmark import (
    add_measure_options,
    failure_cell,
    machine,
    measure,
    measure_options,
    nvidia_smi_gpu,
    table,
    write_section,
)
from esc_deploy.validation.machine import nvidia_smi_query

LARGE_SHAPE = (2, 192, 2040, 2872)  # (batch, 3 * dim, height, width)
LARGE_HEADS = 4
WINDOW = 32


def large_offset_check(seed: int = 0) -> dict[str, object]:
    """Bottom-row windows of the large map against separate runs on their crops (bitwise)."""
    from esc.fused_attention import fused_window_attention

    b, c3, h, w = LARGE_SHAPE
    generator = torch.Generator(device="cuda").manual_seed(seed)
    qkv = torch.randn(b, c3, h, w, device="cuda", dtype=torch.float16, generator=generator)
    bias_table = torch.randn(LARGE_HEADS, (2 * WINDOW - 1) ** 2, device="cuda", generator=generator)
    full = fused_window_attention(qkv, bias_table, LARGE_HEADS, WINDOW)
    top, left = (h - 1) // WINDOW * WINDOW, (w - 1) // WINDOW * WINDOW  # the last window's corner
    crops = {
        "bottom-right window (element loads)": (left, w),
        "window left of it (cp.async)": (left - WINDOW, left),
    }
    result: dict[str, object] = {"qkv": list(LARGE_SHAPE), "window": WINDOW}
    equal = []
    for name, (start, stop) in crops.items():
        alone = fused_window_attention(qkv[:, :, top:, start:stop].contiguous(), bias_table, LARGE_HEADS, WINDOW)
        corner = full[:, :, top:, start:stop]
        equal.append(bool(torch.equal(corner, alone)))
        result[name] = {
            "crop (top, left, height, width)": [top, start, h - top, stop - start],
            "bitwise_equal": equal[-1],
            "max_abs_difference": (corner.float() - alone.float()).abs().max().item(),
            "finite": bool(torch.isfinite(corner).all().item()),
        }
    result["bitwise_equal"] = all(equal)
    del qkv, full
    torch.cuda.empty_cache()
    return result


def render(result: dict[str, object]) -> str:
    rows = result["timings"]
    assert isinstance(rows, list)
    lines = ["# Fused kernel: GPU check", "", "## Machine", ""]
    lines += [f"- {key}: {value}" for key, value in dict(result["machine"]).items()]  # type: ignore[call-overload]
    lines += ["", "## Large offsets", "", "```", json.dumps(result["large_offset"], indent=2), "```"]
    lines += ["", "## Timings (ms)", "", *(table(rows) if rows else ["none"])]
    return "\n".join(lines) + "\n"


def write_results(folder: Path, result: dict[str, object]) -> None:
    atomic_write_text(folder / "kernel-gpu-check.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(folder / "kernel-gpu-check.md", render(result))


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output-dir", type=Path, default=Path("reports/gpu"))
    parser.add_argument("--doc", type=Path, help="also write docs/benchmarks.md's GPU section into this copy")
    parser.add_argument("--skip-large", action="store_true", help="skip the 4.5 GB large-offset case")
    add_measure_options(parser)
    parser.set_defaults(iters=50)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        return error("kernel_gpu_check needs a CUDA device; none is available")
    before = nvidia_smi_query("clocks.sm", nvidia_smi_gpu())
    info = {**machine(), "SM clock MHz before the run (idle)": before[0] if before else "not read"}
    large: dict[str, object] = {"skipped": True}
    if not args.skip_large:
        try:
            large = large_offset_check()
        except Exception as failure:  # recorded; the timings still run
            large = {"bitwise_equal": False, "error": failure_cell(failure)}
            torch.cuda.empty_cache()
    print(f"large offsets: {json.dumps(large)}", flush=True)
    options = measure_options(args)
    rows: list[dict[str, str]] = []
    result: dict[str, object] = {"machine": info, "large_offset": large, "timings": rows}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    write_results(args.output_dir, result)  # and again after each case: a step cut short keeps what it measured
    for row in measure(options):
        rows.append(row)
        write_results(args.output_dir, result)
        if args.doc:
            write_section(args.doc, rows, options)
    print(render(result))
    return 0 if large.get("skipped") or large.get("bitwise_equal") else 1
