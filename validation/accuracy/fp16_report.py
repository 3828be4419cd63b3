"""python validation/fp16_report.py [--output docs/fp16.md] [--runs N] [--shape HxW]

What the calibrated fp16 rule keeps in float32, and what it costs: for the seeded default ESC-light x4
and the same model with blocks.1.pconvs.2.aggr scaled by 1e7 (float32 activations above 1e6 in
blocks.1), the plugin graph's fp16 share of nodes and weights, the calibration's time, and ONNX
Runtime CPU latency (median of --runs) of the calibrated file against the uncalibrated one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from esc_deploy.common.command import ArgumentParser, fail, quiet_exporter_logs
from esc_deploy.common.defaults import DOCS_DIR
from esc_deploy.export.shape_profile import parse_side_pair

DEFAULT_OUTPUT = DOCS_DIR / "fp16.md"
SCALED_LAYER = "blocks.1.pconvs.2.aggr"


def _models() -> dict[str, object]:
    from esc_deploy.common.defaults import default_model

    base = default_model()
    scaled = default_model()
    state = scaled.state_dict()
    for key in (f"{SCALED_LAYER}.weight", f"{SCALED_LAYER}.bias"):
        state[key] = state[key] * 1e7
    scaled.load_state_dict(state)
    return {"ESC-light x4 (seeded default)": base, f"same, {SCALED_LAYER} x 1e7": scaled}


def _latency_ms(proto: object, x: np.ndarray, runs: int) -> float:
    from esc_deploy.export.onnx_graph.ort_session import ort_session

    session = ort_session(proto, arena=True)  # type: ignore[arg-type]  # timed: as in the benchmark
    name = session.get_inputs()[0].name
    session.run(None, {name: x})  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {name: x})
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure(runs: int, shape: tuple[int, int], calibration_shape: tuple[int, int]) -> list[dict[str, object]]:
    from esc_deploy.export.onnx_graph.calibration_set import calibration_for
    from esc_deploy.export.onnx_graph.exporter import OnnxExportOptions, to_onnx_proto
    from esc_deploy.export.onnx_graph.fp16 import calibrate, to_mixed_fp16

    x = np.random.default_rng(0).random((1, 3, *shape), dtype=np.float32)
    rows = []
    for label, model in _models().items():
        fp32 = to_onnx_proto(model, OnnxExportOptions(), keep_metadata=True)  # type: ignore[arg-type]
        chosen = calibration_for("auto", model.config, large_shape=calibration_shape)  # type: ignore[attr-defined]
        assert chosen is not None
        start = time.perf_counter()
        plan = calibrate(fp32, chosen)
        seconds = time.perf_counter() - start
        calibrated, plain = to_mixed_fp16(fp32, plan), to_mixed_fp16(fp32)
        info = json.loads({p.key: p.value for p in calibrated.metadata_props}["esc.fp16"])
        rows.append(
            {
                "model": label,
                "nodes": info["nodes"],
                "fp32_nodes": info["fp32_nodes"],
                "reasons": info["fp32_reasons"],
                "scopes": info["unsafe_scopes"],
                "node_share": info["fp16_node_share"],
                "weight_share": info["fp16_weight_share"],
                "calibration_s": seconds,
                "calibration_inputs": info["calibration"]["inputs"],
                "calibrated_ms": _latency_ms(calibrated, x, runs),
                "uncalibrated_ms": _latency_ms(plain, x, runs),
                "fp32_ms": _latency_ms(fp32, x, runs),
            }
        )
    return rows


def _blocks(scopes: list[str]) -> str:
    """The modules holding a value over the limit, shortened to their blocks' children."""
    if not scopes:
        return "none"
    top = list(dict.fromkeys(".".join(s.split(".")[:3]) for s in scopes))
    return ", ".join(top[:8]) + (f" (+{len(top) - 8})" if len(top) > 8 else "")


def markdown(rows: list[dict[str, object]], runs: int, shape: tuple[int, int]) -> str:
    from esc_deploy.validation.machine import describe_machine, machine_info

    lines = [
        "# fp16: what the calibrated rule keeps in float32, and its cost",
        "",
        "Written by `python validation/fp16_report.py`. Plugin graph; the rule (`esc/fp16.py`) keeps in float32",
        "each node that produces or reads a value or weight above 65504 / 8 on the calibration inputs, besides",
        "LayerNorm, softmax and ReduceMean. Weight share: fp16 values of all weight values (the three",
        "relative-position tables, 47,628 values, stay float32 by the plugin's contract).",
        f"Latency: ONNX Runtime CPU, 1x3x{shape[0]}x{shape[1]} input, median of {runs} runs after one warm-up.",
        "",
        "| model | nodes | fp32 nodes (why) | fp16 nodes | fp16 weights | over the limit in | calibration |"
        " fp16 calibrated (ms) | fp16 uncalibrated (ms) | fp32 (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        reasons = ", ".join(f"{k}: {v}" for k, v in r["reasons"].items())  # type: ignore[attr-defined]
        lines.append(
            f"| {r['model']} | {r['nodes']} | {r['fp32_nodes']} ({reasons}) | {r['node_share']:.1%} | "
            f"{r['weight_share']:.1%} | {_blocks(r['scopes'])} | {r['calibration_s']:.0f} s | "  # type: ignore[arg-type]
            f"{r['calibrated_ms']:.0f} | {r['uncalibrated_ms']:.0f} | {r['fp32_ms']:.0f} |"
        )
    inputs = ", ".join(rows[0]["calibration_inputs"])  # type: ignore[arg-type]
    lines += [
        "",
        f"Calibration inputs: {inputs}. The uncalibrated file of the scaled model outputs NaN (its",
        "timing is the cost of the same graph without the float32 islands).",
        "",
        "On the default model both fp16 files are the same graph (nothing is over the limit): their difference",
        "is run-to-run noise. ONNX Runtime's CPU kernels are slower in fp16 than in fp32; fp16 is for GPUs.",
        "",
        f"Machine: {describe_machine(machine_info())}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python validation/fp16_report.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"default {DEFAULT_OUTPUT}")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per file (default 10)")
    parser.add_argument("--shape", default="180x320", metavar="HxW", help="timed input (default 180x320)")
    parser.add_argument("--calibration-shape", default="1080x1920", metavar="HxW", help="as export/to_onnx.py")
    args = parser.parse_args(argv)
    try:
        shape, calibration_shape = parse_side_pair(args.shape), parse_side_pair(args.calibration_shape)
    except ValueError as exc:
        fail(str(exc))
    if args.runs < 1:
        fail("--runs must be >= 1")
    quiet_exporter_logs()
    rows = measure(args.runs, shape, calibration_shape)
    from esc_deploy.common.files import atomic_write_text

    atomic_write_text(args.output, markdown(rows, args.runs, shape))
    print(f"wrote {args.output}")
    return 0
