"""The fp16 conversion is reproducible: its calibration inputs are fixed by the model and the options
(export/onnx_graph/calibration_set.py), never by this machine's free memory, so two conversions of the
same file write the same bytes, and a second build finds the first one's file instead of calibrating."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from esc_deploy.export.onnx_graph.calibration_set import calibration_set
from esc_deploy.export.onnx_graph.fp16 import convert_to_mixed_fp16
from esc_deploy.export.onnx_graph.metadata import read_model_config
from tests.conftest import ExportCache


@pytest.mark.xdist_group("tiny_x2")  # with the other tiny_x2 exports (tests/conftest.py)
def test_same_inputs_same_fp16_bytes_then_the_cache(exports: ExportCache, tmp_path: Path) -> None:
    src = tmp_path / "tiny.onnx"
    onnx.save(exports.proto("tiny_x2", "native"), str(src))
    config = read_model_config(src)
    first, second = tmp_path / "first.fp16.onnx", tmp_path / "second.fp16.onnx"

    path, reused = convert_to_mixed_fp16(src, first, calibration_set(config))
    assert (path, reused) == (first, False)
    _, reused = convert_to_mixed_fp16(src, second, calibration_set(config))  # calibrated again, from scratch
    assert not reused
    assert first.read_bytes() == second.read_bytes()

    written = first.stat().st_mtime_ns
    path, reused = convert_to_mixed_fp16(src, first, calibration_set(config))
    assert (path, reused) == (first, True) and first.stat().st_mtime_ns == written

    # Other options (another profile maximum): calibrated again, not the cached file.
    _, reused = convert_to_mixed_fp16(src, first, calibration_set(config, large_shape=(48, 80)))
    assert not reused and first.read_bytes() != second.read_bytes()
