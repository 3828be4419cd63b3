"""The prepared GPU check on a machine without a GPU: the script parses, says so in one line and runs nothing;
with an nvidia-smi that answers, every step runs and fails for want of CUDA, which shows the script's plumbing
(the few files it leaves, the logs archive, the summary, the exit status), not GPU results; its Python step
imports, refuses without CUDA, and renders a report."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from esc_deploy.validation.kernel import gpu_check as kernel_gpu_check
from tests.validation.nvidia_smi import stand_in_nvidia_smi

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "validation" / "gpu_check.sh"


def test_script_parses() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_script_without_gpu_prints_one_line_and_runs_nothing(tmp_path: Path) -> None:
    fake = stand_in_nvidia_smi(tmp_path / "bin", "exit 9")  # as on a machine whose driver has no GPU
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    out = tmp_path / "gpu"
    result = subprocess.run(
        ["bash", str(SCRIPT), str(out)], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failures on a machine without CUDA")
def test_script_records_failed_steps_in_a_few_files(tmp_path: Path) -> None:
    # Answers every query (the script only records what it prints); the CUDA steps then fail for real.
    fake = stand_in_nvidia_smi(tmp_path / "bin", "echo 'GPU 0: stand-in (no CUDA device behind it)'")
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "PYTHON": sys.executable}
    out = tmp_path / "gpu"
    result = subprocess.run(
        ["bash", str(SCRIPT), str(out)], cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 1, result.stdout + result.stderr
    files = sorted(path.name for path in out.iterdir())
    assert files == ["cuda-tests.log", "logs.tar.gz", "summary.txt"]  # kernel-gpu-check wrote nothing
    summary = (out / "summary.txt").read_text()
    assert summary == result.stdout
    for step in ("build", "kernel-gpu-check"):
        assert f"gpu_check: {step} failed or timed out" in summary
    assert "gpu_check: cuda-tests failed" not in summary  # no test selected runs here: they skip
    # The engine benchmark (plugin vs TensorRT's fused attention) needs a GPU TensorRT can use: skipped, with why.
    [skipped] = [line for line in summary.splitlines() if line.startswith("gpu_check: engine-benchmark skipped: ")]
    assert len(skipped) > len("gpu_check: engine-benchmark skipped: ") + 10
    assert summary.rstrip().endswith("(exit 1)")
    with tarfile.open(out / "logs.tar.gz") as archive:
        names = set(archive.getnames())
    assert {f"logs/{name}.log" for name in ("build", "cuda-tests", "kernel-gpu-check")} <= names
    assert {"logs/nvidia-smi.txt", "logs/cuda-tests.xml"} <= names
    assert "needs a CUDA device" in (out / "cuda-tests.log").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_python_step_refuses_without_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    assert kernel_gpu_check.main([]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_report_renders_rows_of_different_columns() -> None:
    text = kernel_gpu_check.render(
        {
            "machine": {"GPU": "test"},
            "large_offset": {"bitwise_equal": True},
            "timings": [
                {"case": "x2", "fused ms": "0.500", "fused graph ms": "0.400"},
                {"case": "x4", "fused ms": "failed: RuntimeError: no kernel image"},
            ],
        }
    )
    assert "| case | fused ms | fused graph ms |" in text
    assert "| x2 | 0.500 | 0.400 |" in text and "| x4 | failed: RuntimeError: no kernel image |  |" in text
    assert '"bitwise_equal": true' in text
