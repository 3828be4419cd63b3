"""benchmark.json, benchmark.md and benchmark.png (latency and memory bars per case), written atomically.

Per case the JSON has every run (times_ms, in the order they ran, and start_s, when each began), their
median and, for interleaved rounds, the round medians (round_medians_ms, their min and max).

Sizes: [height, width] in the JSON (options and cases alike), WxH in text (the CLI's spelling).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from esc_deploy.common.files import atomic_output, atomic_write_text
from esc_deploy.validation.bench.suite import BenchmarkOptions, CaseResult, format_size, table_rows
from esc_deploy.validation.machine import describe_machine

JSON_NAME = "benchmark.json"
MARKDOWN_NAME = "benchmark.md"
FIGURE_NAME = "benchmark.png"


def write_benchmark_report(
    cases: Sequence[CaseResult], options: BenchmarkOptions, machine: dict[str, Any], report_dir: Path
) -> dict[str, Path]:
    paths = {
        "json": report_dir / JSON_NAME,
        "markdown": report_dir / MARKDOWN_NAME,
        "figure": report_dir / FIGURE_NAME,
    }
    write_figure(cases, options, paths["figure"])
    atomic_write_text(paths["json"], json.dumps(report_json(cases, options, machine), indent=2) + "\n")
    atomic_write_text(paths["markdown"], report_markdown(cases, options, machine, figure_name=paths["figure"].name))
    return paths


def _options_json(options: BenchmarkOptions) -> dict[str, Any]:
    data = asdict(options)
    for key in ("checkpoint", "plugin", "work_dir"):
        data[key] = None if data[key] is None else str(data[key])
    return data


def report_json(cases: Sequence[CaseResult], options: BenchmarkOptions, machine: dict[str, Any]) -> dict[str, Any]:
    return {
        "protocol": options.protocol,
        "options": _options_json(options),
        "machine": machine,
        "cases": [c.summary() for c in cases],
    }


def format_table(rows: Sequence[Sequence[str]], *, max_cell: int = 60) -> str:
    """Plain aligned text (what the CLI prints); long cells (skip reasons) are cut, the report has them whole."""
    rows = [[c if len(c) <= max_cell else c[: max_cell - 3] + "..." for c in row] for row in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report_markdown(
    cases: Sequence[CaseResult], options: BenchmarkOptions, machine: dict[str, Any], *, figure_name: str = FIGURE_NAME
) -> str:
    rows = table_rows(cases)
    memory_kinds = sorted({c.memory_kind for c in cases if c.memory_kind})
    model = str(options.checkpoint) if options.checkpoint else f"{options.preset} (seeded random weights)"
    lines = [
        "# ESC latency and memory",
        "",
        f"- Machine: {describe_machine(machine)}",
        f"- Model: {model}; output {format_size(options.output_size)}, batch 1; device {options.device}",
        f"- Protocol: {options.protocol}",
        f"- Memory: {'; '.join(memory_kinds) or '-'}",
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|" + "---|" * len(rows[0]),
        *["| " + " | ".join(row) + " |" for row in rows[1:]],
        "",
        f"![latency and memory]({figure_name})",
        "",
    ]
    return "\n".join(lines)


def write_figure(cases: Sequence[CaseResult], options: BenchmarkOptions, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    timed = [c for c in cases if c.status == "ok"]
    fig = Figure(figsize=(12, 0.45 * max(len(timed), 4) + 1.5), layout="constrained")
    FigureCanvasAgg(fig)
    latency, memory = fig.subplots(1, 2)
    labels = [c.label for c in timed]
    positions = list(range(len(timed)))
    medians = [c.median_ms or 0.0 for c in timed]
    # whiskers: the lowest and highest round median (interleaved rounds; none for one round)
    spread = [[m - min(c.round_medians_ms) for c, m in zip(timed, medians, strict=True)],
              [max(c.round_medians_ms) - m for c, m in zip(timed, medians, strict=True)]]  # fmt: skip
    latency.barh(positions, medians, color="tab:blue", xerr=spread if options.round_count > 1 else None, capsize=3)
    latency.set_xlabel("median latency (ms)" + (", whiskers: round medians" if options.round_count > 1 else ""))
    memory.barh(positions, [c.memory_mib or 0.0 for c in timed], color="tab:orange")
    memory.set_xlabel("peak memory (MiB)")
    for ax in (latency, memory):
        ax.set_yticks(positions, labels, fontsize=8)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    memory.set_yticks(positions, [""] * len(positions))
    if not timed:
        latency.text(0.5, 0.5, "no case ran", ha="center", va="center", transform=latency.transAxes)
    title = f"ESC, {format_size(options.output_size)} output, {options.device}: {options.protocol}"
    fig.suptitle(textwrap.fill(title, 150), fontsize=9)  # the interleaved protocol is longer than the figure
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
