"""Interleaved rounds on CPU, with the tiny checkpoint and eager backends (no export): the order the runs
ran in (each run's recorded start), and the spread fields of the report. Timings are never asserted."""

from __future__ import annotations

import json
from itertools import groupby
from pathlib import Path

import pytest

import esc
from esc_deploy.validation.bench import cli as benchmark
from esc_deploy.validation.bench.runner import run_benchmark
from esc_deploy.validation.bench.suite import BenchmarkOptions, CaseResult
from tests.conftest import GOLDEN_DIR

TINY = GOLDEN_DIR / "tiny_x2.pth"
OUTPUT = (48, 64)  # (height, width): a 32x24 input at x2


def _order(cases: list[CaseResult]) -> list[tuple[str, int]]:
    """(backend, runs in a row) in the order the runs began."""
    runs = sorted((start, case.backend) for case in cases for start in case.start_s)
    return [(backend, len(list(group))) for backend, group in groupby(b for _, b in runs)]


def _run(rounds: int) -> list[CaseResult]:
    options = BenchmarkOptions(
        backends=("eager-naive", "eager-sdpa"), output_size=OUTPUT, scales=(2,), dtypes=("fp32",),
        runs=2, warmup=1, rounds=rounds, calibration="off",
    )  # fmt: skip
    return run_benchmark(options, models={2: esc.load_model(TINY)}, log=lambda _: None)


def test_rounds_run_every_case_in_turn() -> None:
    cases = _run(rounds=3)
    assert _order(cases) == [("eager-naive", 2), ("eager-sdpa", 2)] * 3
    for case in cases:
        summary = case.summary()
        assert case.status == "ok" and summary["rounds"] == 3 and summary["runs_per_round"] == 2
        assert summary["runs"] == len(summary["times_ms"]) == len(summary["start_s"]) == 6
        assert len(summary["round_medians_ms"]) == 3
        assert summary["round_median_min_ms"] <= summary["round_median_max_ms"]
        # measured in the memory pass, each case alone, before the rounds
        assert case.memory_mib and case.memory_mib > 0 and "RSS" in case.memory_kind


def test_one_round_runs_each_case_alone() -> None:
    cases = _run(rounds=1)
    assert _order(cases) == [("eager-naive", 2), ("eager-sdpa", 2)]
    assert all(c.summary()["rounds"] == 1 and c.memory_mib for c in cases)


def test_rounds_default_per_device() -> None:
    assert BenchmarkOptions(device="cpu").rounds == 3
    assert BenchmarkOptions(device="cuda").rounds == 1  # the paper's protocol
    assert BenchmarkOptions(device="cuda", rounds=1).protocol == (
        "paper: CUDA events, warm-up 10, median of 100 runs; memory over the timed runs"
    )


def test_report_has_the_spread(tmp_path: Path) -> None:
    argv = ["--checkpoint", str(TINY), "--output-size", "64x48", "--dtype", "fp32", "--device", "cpu",
            "--backends", "eager-naive,eager-sdpa", "--rounds", "2", "--runs", "2", "--warmup", "1",
            "--report-dir", str(tmp_path), "--no-progress"]  # fmt: skip
    assert benchmark.main(argv) == 0
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert report["options"]["rounds"] == 2
    assert "2 interleaved rounds of 2 runs per case in turn, median of 4 runs" in report["protocol"]
    assert "memory in a pass before the rounds, each case alone" in report["protocol"]
    cases = {c["backend"]: c for c in report["cases"]}
    for case in cases.values():
        assert case["status"] == "ok", case["reason"]
        assert case["rounds"] == 2 and case["runs_per_round"] == 2 and case["runs"] == 4
        assert case["round_median_min_ms"] == min(case["round_medians_ms"])
        assert case["round_median_max_ms"] == max(case["round_medians_ms"])
    sdpa = cases["eager-sdpa"]
    markdown = (tmp_path / "benchmark.md").read_text()
    assert "| median ms | round medians ms |" in markdown
    assert f"| {sdpa['round_median_min_ms']:.2f}-{sdpa['round_median_max_ms']:.2f} |" in markdown
    assert "| 2x2 |" in markdown  # runs: rounds x runs per round


@pytest.mark.parametrize("rounds", ["0", "-1", "x"])
def test_bad_rounds_exit_2(rounds: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(["--device", "cpu", "--rounds", rounds])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rounds" in err[0]
