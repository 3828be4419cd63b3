"""parity.json, parity.md and parity.png (error heat-maps and side-by-side crops), each written atomically."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from esc_deploy.common.files import atomic_output, atomic_write_text
from esc_deploy.validation.accuracy.stats import json_number
from esc_deploy.validation.machine import describe_machine

if TYPE_CHECKING:
    from esc_deploy.validation.accuracy.suite import BackendResult, ParityResult

JSON_NAME = "parity.json"
MARKDOWN_NAME = "parity.md"
FIGURE_NAME = "parity.png"
CROP = 48  # output pixels on each side of the crop


def write_parity_report(result: ParityResult, report_dir: Path) -> dict[str, Path]:
    """Write the three files; returns {'json', 'markdown', 'figure'} -> path."""
    paths = {"json": report_dir / JSON_NAME, "markdown": report_dir / MARKDOWN_NAME, "figure": report_dir / FIGURE_NAME}
    write_figure(result, paths["figure"])
    atomic_write_text(paths["json"], json.dumps(report_json(result), indent=2, allow_nan=False) + "\n")
    atomic_write_text(paths["markdown"], report_markdown(result, figure_name=paths["figure"].name))
    return paths


def _backend_json(r: BackendResult) -> dict[str, Any]:
    return {
        "name": r.name,
        "kind": r.backend.kind,
        "precision": r.precision,
        "graph": r.backend.graph,
        "status": r.status,
        "reason": r.reason,
        "line": r.line(),
        "description": r.run.description if r.run else None,
        "seconds": round(sum(r.run.seconds.values()), 3) if r.run else None,
        "comparison": r.verdict.as_json() if r.verdict else None,
        "drift": r.drift.as_json() if r.drift else None,
        "drift_error": r.drift_error or None,
        "fp16_diagnosis": r.fp16_diagnosis or None,
    }


def report_json(result: ParityResult) -> dict[str, Any]:
    return {
        "verdict": "PASS" if result.passed else "FAIL",
        "lines": result.lines(),
        "model": result.model,
        "machine": result.machine,
        "reference": "torch-fp32",
        "inputs": [
            {
                "name": i.name,
                "source_size": list(i.source_size),
                "size": list(i.size),
                "output_size": [
                    i.size[0] * result.model["config"]["scale"],
                    i.size[1] * result.model["config"]["scale"],
                ],
            }
            for i in result.inputs
        ],
        "thresholds": {k: {n: json_number(v) for n, v in asdict(t).items()} for k, t in result.thresholds.items()},
        "backends": [_backend_json(r) for r in result.results],
        "cross_checks": [c.as_json() for c in result.cross_checks],
        "fp16_calibration": result.calibration,
        "fp16_plans": result.fp16_plans,
        "block_max_abs": {b.block: json_number(b.max_abs) for b in result.block_ranges},
        "seconds": round(result.seconds, 2),
    }


def _fmt(value: float, spec: str = ".2e") -> str:
    return format(value, spec) if np.isfinite(value) else str(value)


def report_markdown(result: ParityResult, *, figure_name: str = FIGURE_NAME) -> str:
    config = result.model["config"]
    lines = [
        f"# Parity: {'PASS' if result.passed else 'FAIL'}",
        "",
        f"Model: {result.model['class']} x{config['scale']} (dim {config['dim']}, {config['n_blocks']} blocks, "
        f"window {config['window_size']}). Reference: torch-fp32 (eager, float32, CPU, plain-math attention).",
        "",
        f"Machine: {describe_machine(result.machine)}. Run time {result.seconds:.1f} s.",
        "",
        "Inputs (real photographs, shrunk by the scale; output = input x scale): "
        + ", ".join(f"{i.name} {i.size[0]}x{i.size[1]}" for i in result.inputs)
        + ".",
        "",
        "| backend | verdict | max abs | mean abs | median abs | p99 abs | rel L2 | PSNR dB (worst image) "
        "| 8-bit differ | smallest passing max abs | threshold |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result.results:
        if r.verdict is None:
            status = "reference" if r.status == "reference" else f"{r.status}: {r.reason}"
            lines.append(f"| {r.name} | {status} |" + " |" * 9)
            continue
        s, t = r.verdict.stats, r.verdict.threshold
        threshold = f"max abs {t.max_abs:g}" + (f", PSNR >= {t.min_psnr_db:g}" if t.min_psnr_db is not None else "")
        lines.append(
            f"| {r.name} | **{r.status}** | {_fmt(s.max_abs)} | {_fmt(s.mean_abs)} | {_fmt(s.median_abs)} "
            f"| {_fmt(s.p99_abs)} | {_fmt(s.rel_l2)} | {_fmt(s.psnr_db, '.1f')} ({_fmt(r.verdict.min_psnr_db, '.1f')}) "
            f"| {100 * s.changed_8bit:.3f}% | {_fmt(r.verdict.smallest_passing_max_abs)} | {threshold} |"
        )
    lines += ["", "## Verdicts", "", *[f"- {line}" for line in result.lines()], ""]
    if result.cross_checks:
        lines += ["## Cross-checks (Polygraphy Comparator, SimpleCompareFunc, max abs)", ""]
        lines += [f"- {c.line()}" for c in result.cross_checks] + [""]
    drifts = [r for r in result.results if r.drift is not None]
    if drifts:
        lines += ["## Drift localisation", ""]
        for r in drifts:
            assert r.drift is not None
            lines += [
                f"{r.drift.line()}",
                "",
                "| stage | ONNX value | max abs | max abs of reference | tolerance | exceeded |",
                "|---|---|---|---|---|---|",
            ]
            lines += [
                f"| {st.stage} | `{st.value}` | {_fmt(st.max_abs)} | {st.ref_max_abs:.3g} | {st.tolerance:.2e} "
                f"| {'**yes**' if st.exceeded else 'no'} |"
                for st in r.drift.stages
            ] + [""]
    lines += ["## Per image", ""]
    for r in result.compared:
        assert r.verdict is not None
        lines += [
            f"### {r.name}",
            "",
            "| image | max abs | mean abs | p99 abs | PSNR dB | 8-bit differ |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {_fmt(s.max_abs)} | {_fmt(s.mean_abs)} | {_fmt(s.p99_abs)} | {_fmt(s.psnr_db, '.1f')} "
            f"| {100 * s.changed_8bit:.3f}% |"
            for name, s in r.verdict.per_image.items()
        ] + [""]
    lines += ["## Thresholds", "", "| key | max abs | min PSNR dB | note |", "|---|---|---|---|"]
    lines += [f"| {k} | {t.max_abs:g} | {t.min_psnr_db or '-'} | {t.note} |" for k, t in result.thresholds.items()]
    lines += ["", f"![error heat-maps and crops]({figure_name})", ""]
    return "\n".join(lines)


def _hwc(x: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num(x[0].transpose(1, 2, 0), nan=0.0), 0.0, 1.0)


def write_figure(result: ParityResult, path: Path) -> None:
    """Per compared backend, on its worst image: |error| heat-map, then reference / backend / |error| crops."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    reference = result.result("torch-fp32").run
    rows = [r for r in result.compared if r.run is not None and r.verdict is not None and r.verdict.per_image]
    fig = Figure(figsize=(13, 3.2 * (max(len(rows), 1) + 1)), layout="constrained")
    FigureCanvasAgg(fig)
    grid = max(len(rows), 1) + 1  # the last row: per-block activations against fp16's limit
    _block_range_panel(fig.add_subplot(grid, 1, grid), result)
    if not rows or reference is None:
        fig.text(0.5, 0.75, "no backend was compared", ha="center", va="center")
    for row, r in enumerate(rows):
        assert r.run is not None and r.verdict is not None and reference is not None
        image = r.verdict.worst_image
        got, ref = r.run.outputs[image], reference.outputs[image]
        error = np.nan_to_num(np.abs(got.astype(np.float64) - ref)[0].max(axis=0), nan=np.inf, posinf=1.0)
        cy, cx = np.unravel_index(int(np.argmax(error)), error.shape)
        y0 = int(np.clip(cy - CROP, 0, max(error.shape[0] - 2 * CROP, 0)))
        x0 = int(np.clip(cx - CROP, 0, max(error.shape[1] - 2 * CROP, 0)))
        crop = (slice(y0, y0 + 2 * CROP), slice(x0, x0 + 2 * CROP))
        panels = [fig.add_subplot(grid, 4, 4 * row + k + 1) for k in range(4)]
        vmax = float(error.max()) or 1e-12
        im = panels[0].imshow(error, cmap="inferno", vmin=0, vmax=vmax)
        panels[0].add_patch(_rectangle(x0, y0, 2 * CROP))
        fig.colorbar(im, ax=panels[0], shrink=0.8, format="%.1e")
        panels[0].set_title(f"{r.name} [{r.status}]\n|error| on {image} (max over RGB)", fontsize=9)
        panels[1].imshow(_hwc(ref)[crop])
        panels[1].set_title("torch-fp32 (crop at the largest error)", fontsize=9)
        panels[2].imshow(_hwc(got)[crop])
        panels[2].set_title(f"{r.name} (same crop)", fontsize=9)
        im = panels[3].imshow(error[crop], cmap="inferno", vmin=0, vmax=vmax)
        fig.colorbar(im, ax=panels[3], shrink=0.8, format="%.1e")
        panels[3].set_title(f"|error| crop, max {vmax:.2e}", fontsize=9)
        for ax in panels:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"Parity against torch-fp32: {'PASS' if result.passed else 'FAIL'}", fontsize=11)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)


def _block_range_panel(ax: Any, result: ParityResult) -> None:
    """Max |activation| of each block (float32 reference, parity inputs), log scale, with fp16's limits."""
    from esc.fp16 import FP16_MAX, SAFE_LIMIT

    names = [b.block for b in result.block_ranges]
    values = [max(b.max_abs, 1e-12) if np.isfinite(b.max_abs) else FP16_MAX * 1e6 for b in result.block_ranges]
    colours = ["tab:red" if v > FP16_MAX else "tab:orange" if v > SAFE_LIMIT else "tab:blue" for v in values]
    ax.bar(names, values, color=colours)
    ax.set_yscale("log")
    ax.axhline(FP16_MAX, color="tab:red", linestyle="--", label=f"fp16 max {FP16_MAX:g}")
    ax.axhline(SAFE_LIMIT, color="tab:orange", linestyle=":", label=f"fp16 rule's limit {SAFE_LIMIT:g}")
    ax.set_ylabel("max |activation|")
    ax.set_title("float32 block outputs on the parity inputs against fp16's range", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")


def _rectangle(x0: int, y0: int, side: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x0 - 0.5, y0 - 0.5), side, side, fill=False, edgecolor="cyan", linewidth=1)
