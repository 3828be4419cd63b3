"""Which ONNX a strongly typed build reads: the fp16 mixed file, converted once from the fp32 export."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from esc_deploy.export.onnx_graph.fp16 import to_mixed_fp16
from esc_deploy.export.trt.fp16 import NetworkTyping, is_fp16_mixed, planned_onnx
from esc_deploy.export.trt.options import EngineOptions, Precision


@pytest.fixture
def real_exports(exports, tmp_path: Path) -> tuple[Path, Path]:
    """(fp32, fp16 mixed) files of the tiny_x2 official-format checkpoint's plugin export."""
    fp32 = tmp_path / "tiny.onnx"
    onnx.save(exports.proto("tiny_x2", "plugin"), str(fp32))
    fp16 = tmp_path / "tiny_fp16.onnx"
    onnx.save(to_mixed_fp16(onnx.load(str(fp32))), str(fp16))
    return fp32, fp16


@pytest.mark.xdist_group("tiny_x2")
def test_fp16_detection_on_real_exports(real_exports: tuple[Path, Path]) -> None:
    fp32, fp16 = real_exports
    assert not is_fp16_mixed(fp32)
    assert is_fp16_mixed(fp16)


@pytest.mark.xdist_group("tiny_x2")
def test_planned_onnx(real_exports: tuple[Path, Path]) -> None:
    fp32, fp16 = real_exports
    as_fp16 = EngineOptions(onnx=fp32, precision=Precision.FP16)
    assert planned_onnx(as_fp16, NetworkTyping.WEAK) == fp32  # weak typing: TensorRT picks fp16 itself
    assert planned_onnx(as_fp16, NetworkTyping.STRONG) == fp32.with_name("tiny.fp16.onnx")
    assert planned_onnx(EngineOptions(onnx=fp16, precision=Precision.FP16), NetworkTyping.STRONG) == fp16
    assert planned_onnx(EngineOptions(onnx=fp32), NetworkTyping.STRONG) == fp32
