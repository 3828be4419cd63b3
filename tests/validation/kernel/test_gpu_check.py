"""The prepared GPU check on a machine without a GPU: the script parses, says so in one line and runs nothing;
its Python step imports, refuses without CUDA, and renders a report."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

from esc_deploy.validation.kernel import gpu_check as kernel_gpu_check

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "validation" / "gpu_check.sh"


def test_script_parses() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_script_without_gpu_prints_one_line_and_runs_nothing(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\nexit 9\n")  # as on a machine whose driver has no GPU
    (fake / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    out = tmp_path / "gpu"
    result = subprocess.run(
        ["bash", str(SCRIPT), str(out)], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_python_step_refuses_without_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    assert kernel_gpu_check.main([]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_report_renders() -> None:
    text = kernel_gpu_check.render(
        {
            "machine": {"GPU": "test"},
            "large_offset": {"bitwise_equal": True},
            "timings": [{"case": "x2", "fused ms/call": 0.5, "fused ms/call (graph)": 0.4}],
        }
    )
    assert "| x2 | 0.5 | 0.4 |" in text and "bitwise_equal" in text
