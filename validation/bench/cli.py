"""python validation/benchmark.py [--backends LIST] [--output-size 1280x720] [--scale 2,4] [--dtype fp16,fp32]
[--runs N] [--rounds N] [--warmup N] [--threads N] [--device cuda|cpu] [--checkpoint PATH] [--report-dir DIR]

Latency and peak memory of ESC per backend (eager-naive, eager-sdpa, eager-flex, eager-fused,
onnxruntime, onnxruntime-plugin, onnxruntime-opset23, tensorrt), the paper's protocol on a GPU: 1280x720
output, warm-up, CUDA events, median of 100 runs, torch.cuda.max_memory_allocated (TensorRT: the
engine's device memory). Without a GPU it runs in CPU mode (perf_counter, peak RSS; lower --runs
there), in interleaved rounds: every case of a (scale, dtype) runs --runs times in turn, --rounds
times, so that a noisy machine slows every backend alike (the report adds the spread of the round
medians); each case's memory is measured before, in a pass of its own with the case alone. Backends
that cannot run are listed as "skipped: reason". Writes benchmark.json, benchmark.md and benchmark.png;
prints the table.

Exit code: 0 when every case that could run ran, 1 when one raised, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from esc_deploy.common.command import ArgumentParser, fail, quiet_exporter_logs
from esc_deploy.validation.bench.suite import CPU_ROUNDS, PAPER_RUNS, BenchmarkOptions, Device, format_size


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python validation/benchmark.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = BenchmarkOptions()  # every default is the options dataclass's
    parser.add_argument("--backends", default=",".join(d.backends), help="comma-separated (default: all)")
    parser.add_argument("--output-size", default=format_size(d.output_size), metavar="WxH",
                        help="output size (default %(default)s)")  # fmt: skip
    scales = ",".join(map(str, d.scales))
    parser.add_argument("--scale", default=None, help=f"comma-separated scales (default {scales}; a checkpoint's own)")
    parser.add_argument("--dtype", default=",".join(d.dtypes), help="comma-separated: fp16, fp32 (default %(default)s)")
    parser.add_argument("--runs", type=int, default=d.runs, help="timed runs per round (default %(default)s)")
    parser.add_argument("--rounds", type=int, metavar="N",
                        help=f"interleaved rounds (default: {CPU_ROUNDS} in CPU mode; 1 on CUDA, the paper's protocol: "
                             "each case alone)")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=d.warmup, help="untimed runs first (default %(default)s)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads of torch and ONNX Runtime (default: each library's own)")  # fmt: skip
    parser.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda when available, else cpu")
    parser.add_argument("--preset", default=d.preset, help="model preset (default %(default)s)")
    parser.add_argument("--checkpoint", type=Path, help="official checkpoint instead of the preset")
    parser.add_argument("--plugin", type=Path, default=d.plugin, help="TensorRT plugin library")
    parser.add_argument("--report-dir", type=Path, default=d.work_dir, help="default: %(default)s")
    parser.add_argument("--calibration", default=d.calibration, metavar="DIR|auto|off",
                        help="fp16 cases: the calibrated fp16 rule's photographs (default: %(default)s)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def parse_size(text: str) -> tuple[int, int]:
    """'1280x720' (WxH, the paper's spelling) -> (720, 1280): (height, width), as every size inside."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"--output-size: expected WIDTHxHEIGHT like 1280x720, found {text!r}")
    return int(parts[1]), int(parts[0])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_exporter_logs()
    import torch

    from esc_deploy.validation.bench.report import format_table, write_benchmark_report
    from esc_deploy.validation.bench.runner import run_benchmark
    from esc_deploy.validation.bench.suite import build_models, table_rows
    from esc_deploy.validation.machine import machine_info

    device: Device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: no CUDA device is visible (torch.cuda.is_available() is False)")
    try:
        if args.scale is None and args.checkpoint is not None:  # the checkpoint's own scale
            import esc

            scales: tuple[int, ...] = (esc.infer_config(esc.read_state_dict(args.checkpoint)).scale,)
        else:
            scales = tuple(int(s) for s in _csv(args.scale)) if args.scale else BenchmarkOptions().scales
        options = BenchmarkOptions(
            backends=tuple(_csv(args.backends)),
            output_size=parse_size(args.output_size),
            scales=scales,
            dtypes=tuple(_csv(args.dtype)),  # type: ignore[arg-type]  # checked in __post_init__
            runs=args.runs,
            rounds=args.rounds,
            warmup=args.warmup,
            threads=args.threads,
            device=device,
            preset=args.preset,
            checkpoint=args.checkpoint,
            plugin=args.plugin,
            work_dir=args.report_dir,
            calibration=args.calibration,
        )
        models = build_models(options)
    except (ValueError, OSError) as exc:  # CheckpointError is a ValueError; int('x') too
        fail(str(exc))
    if device == "cpu" and options.total_runs >= PAPER_RUNS:
        print(f"CPU mode: {options.total_runs} runs per case may take long; pass e.g. --runs 10", flush=True)
    cases = run_benchmark(options, models=models, progress=not args.no_progress and sys.stderr.isatty())
    paths = write_benchmark_report(cases, options, machine_info(), args.report_dir)
    print()
    print(format_table(table_rows(cases)))
    print(f"protocol: {options.protocol}")
    print(f"report: {paths['markdown']}")
    return 1 if any(c.status == "error" for c in cases) else 0
