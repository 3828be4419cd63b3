"""The benchmark's structure on CPU with a tiny output and 3 runs (timings are never asserted)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import GOLDEN_DIR
from validation import benchmark

CHECKPOINT = GOLDEN_DIR / "real_x4.pth"  # shares its ONNX export with test_parity_run in one pytest process


def test_cpu_mode_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--checkpoint", str(CHECKPOINT), "--output-size", "128x96", "--dtype", "fp32", "--device", "cpu"]
    code = benchmark.main([*argv, "--runs", "3", "--warmup", "1", "--report-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    for name in ("benchmark.json", "benchmark.md", "benchmark.png"):
        assert (tmp_path / name).stat().st_size > 0
    report = json.loads((tmp_path / "benchmark.json").read_text())
    cases = {c["backend"]: c for c in report["cases"]}
    assert list(cases) == list(benchmark.BACKENDS)
    for name in ("eager-naive", "eager-sdpa", "onnxruntime", "onnxruntime-plugin"):
        case = cases[name]
        assert case["status"] == "ok" and case["runs"] == 3 and len(case["times_ms"]) == 3
        assert case["input_size"] == [24, 32] and case["output_size"] == [96, 128]
        assert case["memory_mib"] > 0 and "RSS" in case["memory_kind"]
    for name in ("eager-flex", "eager-fused", "tensorrt"):
        assert cases[name]["status"] == "skipped" and cases[name]["reason"]
        assert "median_ms" not in cases[name]
    assert (
        report["protocol"] == "reduced: fewer than 100 runs, CPU mode; time.perf_counter, warm-up 1, median of 3 runs"
    )
    assert report["machine"]["cpu"] and report["machine"]["torch"] and "tensorrt" in report["machine"]
    assert "| eager-sdpa | x4 | fp32 | 24x32 |" in (tmp_path / "benchmark.md").read_text()
    assert re.search(r"^eager-naive +x4 ", out, re.MULTILINE)
    assert out.strip().endswith(f"report: {tmp_path / 'benchmark.md'}")


@pytest.mark.parametrize(
    "argv",
    [
        ["--output-size", "1280by720"],
        ["--output-size", "1281x720", "--scale", "2"],
        ["--dtype", "fp8"],
        ["--backends", "eager-bogus"],
        ["--runs", "0"],
        ["--checkpoint", str(CHECKPOINT), "--scale", "2"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(argv)
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
