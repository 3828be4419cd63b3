"""What an ESC deployment build costs: the ONNX export's seconds, and a TensorRT for RTX engine build's
seconds, engine MiB and peak RSS, per preset.

    python validation/engine_build_cost.py --plugin build/plugin/libesc_trt_plugin.so [--runs 3]
        [--presets esc-light,esc] [--report docs/engine_build.md]

Each preset (seeded random weights in the official layout; the cost does not depend on the values) is
exported with the plugin node, then built `--runs` times by `python export/build_engine.py --fp16
--runtime tensorrt-rtx` at the default profile, each build a fresh process measured with wait4()
(wall time, peak resident memory). A benchmark, not a test: it writes a Markdown report with medians,
the machine and the versions.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from esc_deploy.common.command import ArgumentParser, fail
from esc_deploy.common.defaults import DEFAULT_PLUGIN, DOCS_DIR, IN_CHECKOUT, REPO_ROOT
from esc_deploy.common.files import atomic_write_text
from esc_deploy.export.trt.options import EngineOptions

BUILD = REPO_ROOT / "export" / "build_engine.py"
EXPORT = REPO_ROOT / "export" / "to_onnx.py"


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_mib: float
    engine_mib: float


def measured(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one child process; raises on a non-zero exit."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO_ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    stderr = process.stderr.read().decode() if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {stderr.strip().splitlines()[-1:]}")
    return seconds, usage.ru_maxrss / 1024  # KiB on Linux


def export_preset(preset: str, folder: Path) -> tuple[Path, float]:
    """The preset's plugin ONNX and the seconds `python export/to_onnx.py --checkpoint` took to write it."""
    import torch

    import esc

    checkpoint = folder / f"{preset}_x4.pth"
    torch.manual_seed(0)
    torch.save({"params_ema": esc.build_model(preset, scale=4).state_dict()}, checkpoint)
    onnx_path = folder / f"{preset}_x4.onnx"
    seconds, _ = measured([sys.executable, str(EXPORT), "--checkpoint", str(checkpoint), "--output", str(onnx_path)])
    return onnx_path, seconds


def build_runs(onnx_path: Path, plugin: Path, runs: int, folder: Path) -> list[Run]:
    results = []
    for i in range(runs):
        engine = folder / f"{onnx_path.stem}_{i}.engine"
        command = [sys.executable, str(BUILD), "--fp16", "--runtime", "tensorrt-rtx", "--no-progress",
                   "--onnx", str(onnx_path), "--plugin", str(plugin), "--output", str(engine)]  # fmt: skip
        seconds, rss = measured(command)
        results.append(Run(seconds, rss, engine.stat().st_size / 2**20))
    return results


def report(rows: dict[str, list[Run]], exports: dict[str, float], runs: int) -> str:
    import tensorrt_rtx_bindings

    from esc_deploy.export.trt.env import RTX_DEFAULT_TARGETS
    from esc_deploy.validation.machine import describe_machine, machine_info

    profile = EngineOptions().profile.describe()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [
        "# TensorRT for RTX engine build cost",
        "",
        f"Written by `python validation/engine_build_cost.py`. Machine: {describe_machine(machine_info())}.",
        f"TensorRT for RTX {tensorrt_rtx_bindings.__version__}, fp16 (strongly typed, the mixed-precision ONNX "
        f"converted first), with the ESCWindowAttention plugin, default profile ({profile}), compute capabilities "
        f"{', '.join(RTX_DEFAULT_TARGETS)} (the default without a GPU); "
        f"median of {runs} builds, each a fresh `python export/build_engine.py` process (its import time "
        f"included); peak RSS of that process. No GPU is used or needed. Load average at the end: {load}.",
        "",
        "The export column is one `python export/to_onnx.py --checkpoint` process per preset (fp32, plugin node).",
        "",
        "| model | ONNX export s | build s (median) | min-max s | engine MiB | peak RSS MiB (median) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, results in rows.items():
        seconds = [r.seconds for r in results]
        rss = statistics.median(r.peak_rss_mib for r in results)
        lines.append(
            f"| {name} x4 | {exports[name]:.1f} | {statistics.median(seconds):.1f} "
            f"| {min(seconds):.1f}-{max(seconds):.1f} | {results[0].engine_mib:.1f} | {rss:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python validation/engine_build_cost.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--plugin", type=Path, default=DEFAULT_PLUGIN, help="plugin built with 11.x headers")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--presets", default="esc-light,esc")
    parser.add_argument("--report", type=Path, default=DOCS_DIR / "engine_build.md")
    args = parser.parse_args(argv)
    if not IN_CHECKOUT:
        fail("engine_build_cost.py times the checkout's export/to_onnx.py and export/build_engine.py: run it in one")
    if not args.plugin.is_file():
        from esc_deploy.export.trt.plugin import BUILD_PLUGIN_HINT

        fail(f"plugin library {args.plugin} not found: {BUILD_PLUGIN_HINT}")
    if args.runs < 1:
        fail(f"--runs must be >= 1, got {args.runs}")
    rows: dict[str, list[Run]] = {}
    exports: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as work:
        for preset in args.presets.split(","):
            onnx_path, exports[preset] = export_preset(preset, Path(work))
            rows[preset] = build_runs(onnx_path, args.plugin, args.runs, Path(work))
            print(f"{preset}: {[round(r.seconds, 1) for r in rows[preset]]} s", file=sys.stderr)
    text = report(rows, exports, args.runs)
    atomic_write_text(args.report, text)
    print(text)
    return 0
