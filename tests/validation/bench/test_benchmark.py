"""The benchmark's structure on CPU with a tiny output, 3 rounds of one run (timings are never asserted),
and its timing rule: a run ends when its output is ready (a delayed output on CPU; CUDA launches where a
GPU is). The order of interleaved runs: test_interleaved.py; the opset-23 backend: test_opset23.py."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from esc_deploy.validation.bench import cli as benchmark
from esc_deploy.validation.bench.prepare import Prepared
from esc_deploy.validation.bench.suite import BACKENDS, PAPER_OUTPUT, BenchmarkOptions, format_size, skip_reason
from esc_deploy.validation.bench.timing import measure
from tests.conftest import GOLDEN_DIR

CHECKPOINT = (
    GOLDEN_DIR / "real_x4.pth"
)  # shares its ONNX export with tests/validation/accuracy/test_run.py in one pytest process
# The opset-23 graph is another export of this checkpoint (20 s): test_opset23.py runs it on the tiny one.
REPORT_BACKENDS = [b for b in BACKENDS if b != "onnxruntime-opset23"]
DELAY_S = 0.2
SPIN_CYCLES = 2_000_000_000  # torch.cuda._sleep: about a second of GPU clock cycles


def test_cpu_mode_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--checkpoint", str(CHECKPOINT), "--output-size", "128x96", "--dtype", "fp32", "--device", "cpu"]
    argv += ["--backends", ",".join(REPORT_BACKENDS)]
    code = benchmark.main([*argv, "--runs", "1", "--warmup", "1", "--report-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    for name in ("benchmark.json", "benchmark.md", "benchmark.png"):
        assert (tmp_path / name).stat().st_size > 0
    report = json.loads((tmp_path / "benchmark.json").read_text())
    cases = {c["backend"]: c for c in report["cases"]}
    assert list(cases) == REPORT_BACKENDS
    assert report["options"]["output_size"] == [96, 128]  # (height, width), as the cases' sizes
    for name in ("eager-naive", "eager-sdpa", "onnxruntime", "onnxruntime-plugin"):
        case = cases[name]
        assert case["status"] == "ok" and case["runs"] == 3 and len(case["times_ms"]) == 3  # CPU: 3 rounds
        assert case["rounds"] == 3 and case["runs_per_round"] == 1 and len(case["round_medians_ms"]) == 3
        assert case["input_size"] == [24, 32] and case["output_size"] == [96, 128]
        assert case["memory_mib"] > 0 and "RSS" in case["memory_kind"]
    for name in ("eager-flex", "eager-fused", "tensorrt", "tensorrt-fused"):
        assert cases[name]["status"] == "skipped" and cases[name]["reason"]
        assert "median_ms" not in cases[name]
    for name in ("tensorrt", "tensorrt-fused"):
        assert cases[name]["reason"] == "TensorRT runs on CUDA only, not on device cpu"
    assert report["protocol"] == (
        "reduced: fewer than 100 runs, CPU mode; time.perf_counter, warm-up 1, then 3 interleaved rounds of 1 run "
        "per case in turn, median of 3 runs, spread: min-max of the round medians; memory in a pass before the "
        "rounds, each case alone (warm-up 1, then one run)"
    )
    assert report["machine"]["cpu"] and report["machine"]["torch"] and "tensorrt" in report["machine"]
    markdown = (tmp_path / "benchmark.md").read_text()
    assert "output 128x96," in markdown and "| eager-sdpa | x4 | fp32 | 32x24 |" in markdown  # WxH, as the CLI
    assert re.search(r"^eager-naive +x4 ", out, re.MULTILINE)
    assert out.strip().endswith(f"report: {tmp_path / 'benchmark.md'}")


def test_sizes_are_height_width_inside_and_wxh_outside() -> None:
    assert benchmark.parse_size("1280x720") == PAPER_OUTPUT == (720, 1280)
    assert BenchmarkOptions().input_size(4) == (180, 320)
    assert format_size(PAPER_OUTPUT) == "1280x720"
    with pytest.raises(ValueError, match="output size 1280x722 is not divisible by scale 4"):
        BenchmarkOptions(output_size=(722, 1280))


@pytest.mark.parametrize(
    "argv",
    [
        ["--output-size", "1280by720"],
        ["--output-size", "1281x720", "--scale", "2"],
        ["--dtype", "fp8"],
        ["--backends", "eager-bogus"],
        ["--runs", "0"],
        ["--threads", "0"],
        ["--checkpoint", str(CHECKPOINT), "--scale", "2"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(argv)
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_measure_times_until_the_output_is_ready(device: benchmark.Device) -> None:
    """fn returns at once and its output comes DELAY_S later on a worker thread, as a CUDA launch's does."""
    with ThreadPoolExecutor(1) as pool:

        def fn() -> Future[None]:
            return pool.submit(time.sleep, DELAY_S)

        prepared = Prepared(fn, lambda future: future.result(), "", "a delayed output")
        times = measure(prepared, runs=2, warmup=0, device=device).timed.times_ms
    assert len(times) == 2
    assert min(times) >= 0.99 * DELAY_S * 1000  # CUDA events: a few microseconds off the host's clock


def test_tensorrt_is_skipped_on_cpu() -> None:
    """Not run on the GPU anyway and timed by the CPU clock around an asynchronous enqueue."""
    assert skip_reason("tensorrt", "cpu") == "TensorRT runs on CUDA only, not on device cpu"
    assert skip_reason("tensorrt-fused", "cpu") == "TensorRT runs on CUDA only, not on device cpu"


def test_fused_engine_needs_no_plugin(tmp_path: Path) -> None:
    """On CUDA the plugin engine needs the library; the TensorRT-fused one only a usable TensorRT and GPU."""
    from esc_deploy.export.trt.env import cannot_run_engines

    engines = cannot_run_engines()
    missing = tmp_path / "none.so"
    assert skip_reason("tensorrt-fused", "cuda", plugin=missing) == engines
    if engines is None:  # a GPU TensorRT can use: only the plugin engine asks for the library
        assert "not built" in str(skip_reason("tensorrt", "cuda", plugin=missing))


def _assert_ready_waits(prepared: Prepared) -> None:
    """The backend's work queues behind a GPU spin on the current stream: ready() must outwait both."""
    import torch

    torch.cuda.synchronize()
    stream = torch.cuda.current_stream()
    torch.cuda._sleep(SPIN_CYCLES)
    assert not stream.query(), "the spin ended before the check: raise SPIN_CYCLES"
    prepared.ready(prepared.fn())
    assert stream.query()


@pytest.mark.cuda
def test_eager_cuda_ready_waits_for_the_kernels() -> None:
    import esc
    from esc_deploy.validation.bench.prepare import prepare_eager

    model = esc.load_model(GOLDEN_DIR / "tiny_x2.pth")
    _assert_ready_waits(prepare_eager(model, "eager-sdpa", "fp32", "cuda", (1, 3, 32, 32), "off"))


@pytest.mark.tensorrt
def test_tensorrt_ready_waits_for_the_engine(tmp_path: Path) -> None:
    import torch

    import esc
    from esc_deploy.validation.bench.prepare import prepare_tensorrt

    reason = skip_reason("tensorrt", "cuda")  # the plugin library not built
    if reason:
        pytest.skip(reason)
    options = BenchmarkOptions(backends=("tensorrt",), scales=(4,), dtypes=("fp32",), device="cuda", work_dir=tmp_path)
    prepared = prepare_tensorrt(esc.load_model(CHECKPOINT), "fp32", (1, 3, 24, 32), options)
    assert prepared.fn().device == torch.device("cuda", torch.cuda.current_device())
    _assert_ready_waits(prepared)
