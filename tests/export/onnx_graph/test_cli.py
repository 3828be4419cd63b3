"""`python export/to_onnx.py`: summary on success; one line and exit 2 on bad input, no file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnx
import pytest

import esc
from esc_deploy.export.onnx_graph.calibration import fp16_record
from esc_deploy.export.onnx_graph.cli import main
from esc_deploy.export.onnx_graph.exporter import OnnxExportOptions, export_onnx
from tests.conftest import GOLDEN_DIR

REPO = Path(__file__).resolve().parents[3]


def test_checkpoint_export_prints_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiny.onnx"
    assert main(["--checkpoint", str(GOLDEN_DIR / "tiny_x2.pth"), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    assert "nodes (1 attention)" in printed and "input[batch,3,height,width] float32" in printed
    assert [d.dim_param for d in onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim] == [
        "batch", "", "height", "width"
    ]  # fmt: skip


def test_fp16_export_prints_what_stays_float32(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiny_fp16.onnx"
    argv = ["--checkpoint", str(GOLDEN_DIR / "tiny_x2.pth"), "--precision", "fp16", "--calibration-shape", "40x56"]
    assert main([*argv, "--output", str(out)]) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("fp16: ")]
    assert "calibrated on astronaut" in line and "astronaut@40x56" in line and "; verified on them: " in line, line
    record = fp16_record(onnx.load(str(out)))
    assert record is not None and record["calibrated"]


def test_static_shape(tmp_path: Path) -> None:
    out = tmp_path / "static.onnx"
    assert (
        main(["--checkpoint", str(GOLDEN_DIR / "tiny_x2.pth"), "--output", str(out), "--static-shape", "1x3x24x40"])
        == 0
    )
    dims = [d.dim_value for d in onnx.load(str(out)).graph.output[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 48, 80]


def _run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "export/to_onnx.py", *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--checkpoint", "missing.pth"], "checkpoint not found"),
        (["--static-shape", "1x3x4"], "expected an NCHW shape like 1x3x64x64"),
        (["--static-shape", "1x1x64x64"], "needs 3 channels"),
        (["--static-shape", "1x3x4x64"], "sides must be >= 5"),
        (["--opset", "12"], "opset must be between"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "never.onnx"
    extra = [] if "--checkpoint" in args else ["--checkpoint", str(GOLDEN_DIR / "tiny_x2.pth")]
    result = _run(*args, *extra, "--output", str(out))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_unreadable_checkpoint_and_unwritable_output(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    result = _run("--checkpoint", str(junk), "--output", str(tmp_path / "x.onnx"))
    assert result.returncode == 2 and "cannot read" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    result = _run("--checkpoint", str(GOLDEN_DIR / "tiny_x2.pth"), "--output", str(blocker / "x.onnx"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "junk.pth"]


def test_export_is_deterministic(tmp_path: Path) -> None:
    model = esc.load_model(GOLDEN_DIR / "tiny_x2_b2.pth")
    for name in ("a.onnx", "b.onnx"):
        export_onnx(model, tmp_path / name, OnnxExportOptions())
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
