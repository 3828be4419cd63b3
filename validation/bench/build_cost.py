"""What an ESC deployment build costs: the ONNX export's seconds, and a TensorRT for RTX engine build's
seconds, engine MiB and peak RSS, per preset and per attention path (the plugin, TensorRT's own fused kernel).

    python validation/engine_build_cost.py [--plugin build/plugin/libesc_trt_plugin.so] [--runs 3]
        [--presets esc-light,esc] [--report docs/engine_build.md]

Each preset (seeded random weights in the official layout; the cost does not depend on the values) is
exported once with the plugin node, then built `--runs` times per path by `python export/build_engine.py
--fp16 --runtime tensorrt-rtx --attention plugin|tensorrt` at the default profile with nothing cached
(the fp16 ONNX, and the TensorRT path's standard-attention ONNX, deleted before each run: calibration
included), each build a fresh process measured with wait4() (wall time, peak resident memory); then
once more with the fp16 ONNX left from the run before (the cached build). Without the plugin library
the plugin rows say why they are missing. A benchmark, not a test: it writes a Markdown report with
medians, the machine and the versions.
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


PATHS = ("plugin", "tensorrt")


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_mib: float
    engine_mib: float
    fused_blocks: str  # 'fused of blocks' from the sidecar


@dataclass(frozen=True)
class Row:
    preset: str
    path: str
    runs: tuple[Run, ...]
    cached: Run | None
    missing: str = ""  # why there are no runs


def measured(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one child process; raises on a non-zero exit."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO_ROOT)
    stderr = process.stderr.read().decode() if process.stderr else ""  # read first: a full pipe would block
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
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


def derived_files(onnx_path: Path) -> list[Path]:
    """What a build writes beside the ONNX and a later build reuses (the cache)."""
    from esc_deploy.export.onnx_graph.standard_attention import standard_attention_path
    from esc_deploy.export.trt.options import fp16_onnx_path

    standard = standard_attention_path(onnx_path)
    return [fp16_onnx_path(onnx_path), standard, fp16_onnx_path(standard)]


def one_build(onnx_path: Path, path: str, plugin: Path, engine: Path) -> Run:
    from esc_deploy.export.trt.sidecar import EngineSidecar

    command = [sys.executable, str(BUILD), "--fp16", "--runtime", "tensorrt-rtx", "--no-progress", "--attention",
               path, "--onnx", str(onnx_path), "--plugin", str(plugin), "--output", str(engine)]  # fmt: skip
    seconds, rss = measured(command)
    sidecar = EngineSidecar.read(engine)
    fused = f"{sidecar.fused_attention_blocks} of {sidecar.model.n_blocks}"
    return Run(seconds, rss, engine.stat().st_size / 2**20, fused)


def build_runs(onnx_path: Path, path: str, plugin: Path, runs: int, folder: Path) -> tuple[list[Run], Run]:
    """``runs`` builds with nothing cached, then one that finds the last one's fp16 ONNX."""
    results = []
    for i in range(runs):
        for stale in derived_files(onnx_path):
            stale.unlink(missing_ok=True)
        results.append(one_build(onnx_path, path, plugin, folder / f"{onnx_path.stem}_{path}_{i}.engine"))
    cached = one_build(onnx_path, path, plugin, folder / f"{onnx_path.stem}_{path}_cached.engine")
    return results, cached


def report(rows: list[Row], exports: dict[str, float], runs: int) -> str:
    import tensorrt_rtx_bindings

    from esc_deploy.export.trt.env import RTX_DEFAULT_TARGETS
    from esc_deploy.validation.machine import describe_machine, load_note, machine_info

    profile = EngineOptions().profile.describe()
    lines = [
        "# TensorRT for RTX engine build cost",
        "",
        f"Written by `python validation/engine_build_cost.py`. Machine: {describe_machine(machine_info())}.",
        f"TensorRT for RTX {tensorrt_rtx_bindings.__version__}, `--fp16` (strongly typed: the ONNX is calibrated "
        f"and converted to mixed fp16 first), default profile ({profile}), compute capabilities "
        f"{', '.join(RTX_DEFAULT_TARGETS)} (the default without a GPU). Attention `plugin`: the ESCWindowAttention "
        "plugin library; `tensorrt`: no plugin, the plugin export's nodes replaced by standard ops, which "
        "TensorRT fuses into its own attention kernel (`fused` counts the blocks the builder's layer report "
        "shows as one kernel).",
        "",
        f"Build: median of {runs} builds with nothing cached (calibration and fp16 conversion included), each a "
        "fresh `python export/build_engine.py` process (import time included), and its peak RSS; cached: one "
        "more build that finds the fp16 ONNX of the build before. No GPU is used or needed. "
        f"{load_note().capitalize()}.",
        "",
        "The export column is one `python export/to_onnx.py --checkpoint` process per preset (fp32, plugin node).",
        "",
        "| model | attention | ONNX export s | build s (median) | min-max s | peak RSS MiB (median) | cached build s "
        "| cached peak RSS MiB | engine MiB | fused |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        head = f"| {row.preset} x4 | {row.path} | {exports[row.preset]:.1f} "
        if not row.runs or row.cached is None:
            lines.append(head + f"| {row.missing} | | | | | | |")
            continue
        seconds = [r.seconds for r in row.runs]
        rss = statistics.median(r.peak_rss_mib for r in row.runs)
        lines.append(
            head + f"| {statistics.median(seconds):.1f} | {min(seconds):.1f}-{max(seconds):.1f} | {rss:.0f} "
            f"| {row.cached.seconds:.1f} | {row.cached.peak_rss_mib:.0f} | {row.runs[0].engine_mib:.1f} "
            f"| {row.runs[0].fused_blocks} |"
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
    if args.runs < 1:
        fail(f"--runs must be >= 1, got {args.runs}")
    no_plugin = ""
    if not args.plugin.is_file():
        from esc_deploy.export.trt.plugin import BUILD_PLUGIN_HINT

        no_plugin = f"not measured: no plugin library at {args.plugin} ({BUILD_PLUGIN_HINT})"
        print(f"warning: {no_plugin}", file=sys.stderr)
    rows: list[Row] = []
    exports: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as work:
        for preset in args.presets.split(","):
            onnx_path, exports[preset] = export_preset(preset, Path(work))
            for path in PATHS:
                if path == "plugin" and no_plugin:
                    rows.append(Row(preset, path, (), None, no_plugin))
                    continue
                runs, cached = build_runs(onnx_path, path, args.plugin, args.runs, Path(work))
                rows.append(Row(preset, path, tuple(runs), cached))
                print(f"{preset} {path}: {[round(r.seconds, 1) for r in runs]} s, cached {cached.seconds:.1f} s",
                      file=sys.stderr)  # fmt: skip
    text = report(rows, exports, args.runs)
    atomic_write_text(args.report, text)
    print(text)
    return 0
