"""Precision per runtime: weak typing with fp32 islands on TensorRT 10.x, strongly typed elsewhere.

TensorRT 10.x: `--fp16` sets BuilderFlag.FP16 and pins normalization and softmax layers to fp32
(their reductions over 60+ channels or 256 window tokens lose too much in fp16), and the layers of
every node the calibrated fp16 rule keeps in float32, enforced by OBEY_PRECISION_CONSTRAINTS.
TensorRT 11.x and TensorRT for RTX have none of that: the network is strongly typed, so fp16 must
already be in the ONNX, which the export step's calibrated mixed-precision conversion writes.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from esc_deploy.export.onnx_graph.graph_file import owned_copy, read_graph
from esc_deploy.export.trt.env import TrtRuntime
from esc_deploy.export.trt.options import EngineOptions, Precision, fp16_onnx_path

if TYPE_CHECKING:
    from esc_deploy.export.onnx_graph.calibration_set import CalibrationSet


class NetworkTyping(str, Enum):
    WEAK = "weak"  # TensorRT picks layer precisions within the builder flags (10.x)
    STRONG = "strong"  # tensor types follow the ONNX exactly (11.x, TensorRT for RTX)


def network_typing(runtime: TrtRuntime) -> NetworkTyping:
    return NetworkTyping.STRONG if runtime.strongly_typed_only else NetworkTyping.WEAK


def is_fp16_mixed(path: Path) -> bool:
    """True when the ONNX file already holds fp16 weights (esc_deploy.export.onnx_graph.fp16.is_mixed_fp16)."""
    from esc_deploy.export.onnx_graph.fp16 import is_mixed_fp16

    return is_mixed_fp16(read_graph(path))


def calibration(options: EngineOptions) -> CalibrationSet | None:
    """The fp16 rule's calibration set for this build: the file's model, up to the profile's largest shape."""
    from esc_deploy.export.onnx_graph.calibration_set import calibration_for
    from esc_deploy.export.onnx_graph.metadata import read_model_config

    config = read_model_config(options.onnx)
    return calibration_for(options.calibration, config, large_shape=options.profile.max[2:])


def calibrated_fp32_nodes(options: EngineOptions) -> set[str]:
    """ONNX nodes the rule keeps in float32 (10.x weak typing pins their layers); empty with 'off'."""

    from esc_deploy.export.onnx_graph.fp16 import calibrate

    chosen = calibration(options)
    if chosen is None:
        return set()
    return set(calibrate(owned_copy(options.onnx), chosen).fp32_nodes)


def needs_fp16_onnx(options: EngineOptions, typing: NetworkTyping) -> bool:
    return options.precision is Precision.FP16 and typing is NetworkTyping.STRONG


def planned_onnx(options: EngineOptions, typing: NetworkTyping) -> Path:
    """The ONNX the build will parse, without writing anything (for --print-trtexec)."""
    if not needs_fp16_onnx(options, typing):
        return options.onnx
    if options.onnx.is_file() and is_fp16_mixed(options.onnx):
        return options.onnx
    return fp16_onnx_path(options.onnx)


def prepare_onnx(options: EngineOptions, typing: NetworkTyping, *, progress: bool = False) -> tuple[Path, bool]:
    """The ONNX to parse, and whether an earlier conversion was reused; strongly typed with --fp16, converts
    an fp32 file to fp16 mixed precision first (``progress``: a bar while it calibrates)."""
    if not needs_fp16_onnx(options, typing) or is_fp16_mixed(options.onnx):
        return options.onnx, False
    from esc_deploy.export.onnx_graph.fp16 import convert_to_mixed_fp16  # owned by the export step

    return convert_to_mixed_fp16(options.onnx, fp16_onnx_path(options.onnx), calibration(options), progress=progress)
