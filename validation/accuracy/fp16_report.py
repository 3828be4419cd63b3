"""python validation/fp16_report.py [--output docs/fp16.md] [--calibration-shape HxW]

What the calibrated, verified fp16 conversion keeps in float32 and what its search costs, for four
checkpoints in the official format made here: the seeded default ESC-light x4 (nothing to widen), a
briefly trained ESC-light x2, the default with blocks.1.pconvs.2.aggr scaled by 1e7, and ESC-light x4
with every weight drawn as tests/data/golden/README.md describes (float32 activations far above 1e9).
For each: the plugin graph's largest float32 activation, the range plan's and the verified plan's
error on the calibration inputs, the units kept float32 by range and by accuracy, the fp16 share of
nodes and weights, the verification runs and the search's time.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

from esc_deploy.common.command import ArgumentParser, fail, quiet_exporter_logs
from esc_deploy.common.defaults import DOCS_DIR
from esc_deploy.export.shape_profile import parse_side_pair

DEFAULT_OUTPUT = DOCS_DIR / "fp16.md"
SCALED_LAYER = "blocks.1.pconvs.2.aggr"
TRAIN_STEPS = 40


def golden_recipe_state(model: Any, seed: int) -> dict[str, Any]:
    """Every parameter re-drawn as tests/data/golden/README.md says: convolutions ~ N(0, 1/fan_in),
    layer-norm weights near 1, relative-position tables ~ N(0, 0.25), everything else ~ N(0, 0.0025)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if not value.is_floating_point():
            state[key] = value
            continue
        noise = torch.randn(value.shape, generator=generator)
        if value.dim() == 4:
            state[key] = noise / math.sqrt(value[0].numel())
        elif "ln" in key and key.endswith("weight"):  # ln_proj, ln_attn, lns.i, ln_out
            state[key] = 1 + 0.05 * noise
        elif "relative_position" in key:
            state[key] = 0.5 * noise
        else:
            state[key] = 0.05 * noise
    return state


def _briefly_trained(steps: int) -> Any:
    """ESC-light x2 from the seeded official init, ``steps`` Adam steps of L1 on 64x64 crops of the
    bundled photographs (the low-resolution side by 2x2 mean): weights like an early checkpoint's."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    import esc
    from esc_deploy.common.defaults import DEFAULT_SEED
    from esc_deploy.export.photographs import skimage_photographs

    torch.manual_seed(DEFAULT_SEED)
    model = esc.build_model("esc-light", scale=2, attention="sdpa").train()
    photos = [torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255).permute(2, 0, 1) for _, rgb in
              skimage_photographs(("astronaut", "coffee", "chelsea", "rocket"))]  # fmt: skip
    optimiser = torch.optim.Adam(model.parameters(), lr=5e-4)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        crops = []
        for photo in photos:
            top = int(torch.randint(photo.shape[1] - 64, (1,), generator=generator))
            left = int(torch.randint(photo.shape[2] - 64, (1,), generator=generator))
            crops.append(photo[:, top : top + 64, left : left + 64])
        high = torch.stack(crops)  # (4, 3, 64, 64)
        loss = F.l1_loss(model(F.avg_pool2d(high, 2)), high)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def _models() -> dict[str, Any]:
    import esc
    from esc_deploy.common.defaults import default_model

    scaled = default_model()
    state = scaled.state_dict()
    for key in (f"{SCALED_LAYER}.weight", f"{SCALED_LAYER}.bias"):
        state[key] = state[key] * 1e7
    scaled.load_state_dict(state)
    drawn = esc.build_model("esc-light", scale=4)
    drawn.load_state_dict(golden_recipe_state(drawn, 0))
    return {
        "ESC-light x4, seeded default": default_model(),
        f"ESC-light x2, {TRAIN_STEPS} training steps": _briefly_trained(TRAIN_STEPS),
        f"default, {SCALED_LAYER} x 1e7": scaled,
        "ESC-light x4, golden-recipe weights": drawn,
    }


def measure(calibration_shape: tuple[int, int]) -> list[dict[str, Any]]:
    import warnings

    from esc_deploy.export.onnx_graph.calibration import fp16_record
    from esc_deploy.export.onnx_graph.calibration_set import calibration_for
    from esc_deploy.export.onnx_graph.exporter import OnnxExportOptions, to_onnx_proto
    from esc_deploy.export.onnx_graph.fp16 import calibrate, to_mixed_fp16
    from esc_deploy.export.onnx_graph.fp16_search import verify_and_widen

    rows = []
    for label, model in _models().items():
        fp32 = to_onnx_proto(model, OnnxExportOptions(), keep_metadata=True)
        chosen = calibration_for("auto", model.config, large_shape=calibration_shape)
        assert chosen is not None
        start = time.perf_counter()
        base = calibrate(fp32, chosen, verify=False)
        range_seconds = time.perf_counter() - start
        searched = verify_and_widen(fp32, base, chosen.arrays())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            planned, verified = to_mixed_fp16(fp32, base), to_mixed_fp16(fp32, searched.plan)
        info, planned_info = fp16_record(verified), fp16_record(planned)
        assert info is not None and planned_info is not None
        same = planned.graph.SerializeToString(deterministic=True) == verified.graph.SerializeToString(
            deterministic=True
        )
        peak = max((u.max_abs for u in base.unsafe), default=None)
        rows.append(
            {
                "model": label,
                "peak": peak,
                "nodes": info["nodes"],
                "range_nodes": planned_info["fp32_nodes"],
                "range_units": _blocks(info["accuracy"]["fp32_units_by_range"]),
                "range_error": searched.steps[0].error,
                "accuracy_units": info["accuracy"]["fp32_units_by_accuracy"],
                "fp32_nodes": info["fp32_nodes"],
                "node_share": info["fp16_node_share"],
                "weight_share": info["fp16_weight_share"],
                "range_node_share": planned_info["fp16_node_share"],
                "error": searched.error,
                "only_fp32": searched.only_fp32,
                "runs": len(searched.steps),
                "range_s": range_seconds,
                "search_s": searched.seconds,
                "same_graph": same,
                "inputs": info["calibration"]["inputs"],
            }
        )
    return rows


def _blocks(scopes: list[str]) -> str:
    """Module paths shortened to their blocks' children."""
    if not scopes:
        return "none"
    top = list(dict.fromkeys(".".join(s.split(".")[:3]) for s in scopes))
    return ", ".join(top[:6]) + (f" (+{len(top) - 6})" if len(top) > 6 else "")


def _error(error: Any) -> str:
    if not math.isfinite(error.max_abs):
        return "not finite"
    return f"{error.max_abs:.1e} / {error.min_psnr_db:.1f} dB"


def _units(units: list[str], only_fp32: bool) -> str:
    if only_fp32:
        return "everything (only float32 passes)"
    if not units:
        return "none"
    return ", ".join(units[:4]) + (f" (+{len(units) - 4} layers)" if len(units) > 4 else "")


def markdown(rows: list[dict[str, Any]], calibration_shape: tuple[int, int]) -> str:
    from esc_deploy.export.onnx_graph.fp16_search import GRAPH_TOLERANCE, with_headroom
    from esc_deploy.validation.machine import describe_machine, machine_info

    target = with_headroom(GRAPH_TOLERANCE)
    tolerance = (
        f"max abs <= {GRAPH_TOLERANCE.max_abs:g}, worst-image PSNR >= {GRAPH_TOLERANCE.min_psnr_db:g} dB, with "
        f"headroom: {target.max_abs:g} and {target.min_psnr_db:g} dB on the calibration inputs"
    )
    lines = [
        "# fp16: what stays float32, by range and by accuracy, and what the search costs",
        "",
        "Written by `python validation/fp16_report.py`. Plugin graph. The range rule (`esc/fp16.py`) keeps in",
        "float32 each node that produces or reads a value or weight above 65504 / 8 on the calibration inputs,",
        "besides LayerNorm, softmax and ReduceMean; the converted file is then run against float32 on the same",
        f"inputs and must meet the fp16 backends' parity thresholds ({tolerance}); where it",
        "does not, `export/onnx_graph/fp16_search.py` widens the float32 set by module scopes (bisection over",
        "the top-level units in graph order, then over the layers of the last one). Errors are fp16 against",
        "float32 on the calibration inputs (max abs / worst-image PSNR).",
        "",
        "| checkpoint | largest fp32 activation | range plan: fp32 nodes, in | its error | float32 for accuracy |"
        " error | fp16 nodes | fp16 weights | runs | range (s) | search (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        peak = "below the limit" if r["peak"] is None else f"{r['peak']:.1e}"
        lines.append(
            f"| {r['model']} | {peak} | {r['range_nodes']}, {r['range_units']} | {_error(r['range_error'])} | "
            f"{_units(r['accuracy_units'], r['only_fp32'])} | {_error(r['error'])} | {r['node_share']:.1%} "
            f"(range plan {r['range_node_share']:.1%}) | {r['weight_share']:.1%} | {r['runs']} | "
            f"{r['range_s']:.0f} | {r['search_s']:.0f} |"
        )
    default = rows[0]
    lines += [
        "",
        f"Calibration inputs (largest shape {calibration_shape[0]}x{calibration_shape[1]}): "
        + "; ".join(f"{r['model']}: {', '.join(r['inputs'])}" for r in rows[:2])
        + " (the x4 models share the first list).",
        "",
        f"The seeded default needs one verification run and nothing widened: its converted graph is "
        f"{'byte for byte' if default['same_graph'] else 'NOT'} the range plan's (the metadata gains the record).",
        "Each run converts the graph and runs it once over the calibration inputs in ONNX Runtime (CPU, fp16",
        "kernels: slower than float32 here; fp16 is for GPUs). Weight share: fp16 values of all weight values",
        "(the relative-position tables stay float32 by the plugin's contract).",
        "",
        f"Machine: {describe_machine(machine_info())}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python validation/fp16_report.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"default {DEFAULT_OUTPUT}")
    parser.add_argument("--calibration-shape", default="1080x1920", metavar="HxW", help="as export/to_onnx.py")
    args = parser.parse_args(argv)
    try:
        calibration_shape = parse_side_pair(args.calibration_shape)
    except ValueError as exc:
        fail(str(exc))
    quiet_exporter_logs()
    rows = measure(calibration_shape)
    from esc_deploy.common.files import atomic_write_text

    atomic_write_text(args.output, markdown(rows, calibration_shape))
    print(f"wrote {args.output}")
    return 0
