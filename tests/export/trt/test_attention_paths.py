"""Which attention each engine got, from the real TensorRT for RTX builder's layer report.

Plugin-free fp16 engines of ESC-light (native export at opset 18, at opset 23, and the plugin export
built with `--attention auto` and no plugin library) fuse every block's window attention into one
TensorRT kernel, recorded per block in the sidecar (ESC has the same attention layer in 5 blocks instead
of 3: docs/attention_paths.md); an fp32 build leaves it unfused and says so; an fp32 opset-23 build,
which TensorRT cannot build, ends in one line; a second build of the same inputs reuses the first
one's fp16 ONNX. The plugin engine's record is checked in test_rtx.py.
Small profiles keep each build and its calibration short; each engine is built once per module.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from esc_deploy.export.trt.sidecar import EngineSidecar
from tests.conftest import REPO, ExportCache

# With the other tests of the default model's exports (tests/conftest.py): one export per graph.
pytestmark = [pytest.mark.tensorrt_rtx, pytest.mark.xdist_group("default")]

SCRIPT = REPO / "export" / "build_engine.py"
PROFILE = ("--min-shape", "1x3x64x64", "--opt-shape", "1x3x64x64", "--max-shape", "1x3x96x96")
# The default model's calibrated plan keeps nodes in float32 by op type only (asserted on the CI parity report's
# plan, test_default_report.py): its calibrated fp16 graph is the uncalibrated one, so the fusion is the same
# without calibration's 11 s per build. Calibrated builds: test_calibration.py, test_fp16_search.py.
CALIBRATION = ("--calibration", "off")
SOURCES = {"native18": ("native", 18), "native23": ("native", 23), "plugin": ("plugin", 18)}
PRESETS = {"esc-light": "default"}  # preset -> ExportCache name


def build(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--runtime", "tensorrt-rtx", "--compute-capability", "8.9", "--no-progress",
         *PROFILE, *CALIBRATION, *args],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )  # fmt: skip


class Builds:
    """Each (preset, source, precision) exported and built once for the module."""

    def __init__(self, exports: ExportCache, folder: Path) -> None:
        self.exports, self.folder = exports, folder
        self.results: dict[tuple[str, str, str], tuple[Path, subprocess.CompletedProcess[str]]] = {}

    def onnx(self, preset: str, source: str) -> Path:
        path = self.folder / f"{preset}_{source}.onnx"
        if not path.is_file():
            attention, opset = SOURCES[source]
            onnx.save(self.exports.proto(PRESETS[preset], attention, opset), str(path))
        return path

    def get(self, preset: str, source: str, precision: str = "fp16") -> tuple[Path, subprocess.CompletedProcess[str]]:
        key = (preset, source, precision)
        if key not in self.results:
            engine = self.folder / f"{preset}_{source}_{precision}.engine"
            flags = ["--fp16"] if precision == "fp16" else []
            # No plugin library at the default path here: auto takes TensorRT's path for the plugin export.
            result = build("--onnx", str(self.onnx(preset, source)), "--plugin", str(self.folder / "none.so"),
                           "--output", str(engine), *flags)  # fmt: skip
            self.results[key] = (engine, result)
        return self.results[key]


@pytest.fixture(scope="module")
def builds(exports: ExportCache, tmp_path_factory: pytest.TempPathFactory) -> Builds:
    return Builds(exports, tmp_path_factory.mktemp("attention_paths"))


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize("preset", list(PRESETS))
def test_plugin_free_fp16_engine_fuses_every_block(builds: Builds, preset: str, source: str) -> None:
    engine, result = builds.get(preset, source)
    assert result.returncode == 0, result.stderr
    sidecar = EngineSidecar.read(engine)
    n = sidecar.model.n_blocks
    assert sidecar.plugin is None and sidecar.attention == "tensorrt"
    assert sidecar.fused_attention_blocks == n == len(sidecar.attention_blocks)
    assert [b.block for b in sidecar.attention_blocks] == [f"blocks.{i}" for i in range(n)]
    for block in sidecar.attention_blocks:
        assert block.implementation == "fused" and block.tactic.startswith("_gemm_mha_v2"), block
    lines = result.stderr.splitlines()
    assert not [line for line in lines if line.startswith("warning:")]
    [choice] = [line for line in lines if line.startswith("attention: ")]
    if source == "plugin":
        assert choice.startswith("attention: tensorrt (auto: no plugin library at ") and "none.so" in choice
        assert sidecar.built_onnx.path.endswith(".standard_attention.fp16.onnx")
    else:
        assert choice.startswith("attention: tensorrt (auto: the ONNX has no plugin node")
    print(f"{preset} {source}: {n} fused blocks ({sidecar.attention_blocks[0].tactic}), {sidecar.build_seconds} s")


def test_opset23_attention_stays_fp16(builds: Builds) -> None:
    engine, result = builds.get("esc-light", "native23")
    assert result.returncode == 0, result.stderr
    built = onnx.load(EngineSidecar.read(engine).built_onnx.path, load_external_data=False)
    inferred = onnx.shape_inference.infer_shapes(built).graph
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.value_info}
    attention = [node for node in built.graph.node if node.op_type == "Attention"]
    assert len(attention) == 3
    for node in attention:  # q, k, v and the additive mask
        assert [types[name] for name in node.input] == [onnx.TensorProto.FLOAT16] * 4, node.name


def test_second_build_reuses_the_fp16_onnx(builds: Builds, tmp_path: Path) -> None:
    engine, first = builds.get("esc-light", "native18")
    assert first.returncode == 0, first.stderr
    fp16 = Path(EngineSidecar.read(engine).built_onnx.path)
    before = hashlib.sha256(fp16.read_bytes()).hexdigest()
    assert f"fp16 ONNX written to {fp16}" in first.stdout
    second = build("--fp16", "--onnx", str(builds.onnx("esc-light", "native18")), "--no-plugin",
                   "--output", str(tmp_path / "again.engine"))  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert f"fp16 ONNX reused from {fp16}" in second.stdout
    assert hashlib.sha256(fp16.read_bytes()).hexdigest() == before
    assert EngineSidecar.read(tmp_path / "again.engine").built_onnx.sha256 == before


def test_fp32_build_is_unfused_and_warns(builds: Builds) -> None:
    engine, result = builds.get("esc-light", "native18", "fp32")
    assert result.returncode == 0, result.stderr
    sidecar = EngineSidecar.read(engine)
    assert sidecar.fused_attention_blocks == 0 and len(sidecar.attention_blocks) == 3
    assert {b.implementation for b in sidecar.attention_blocks} == {"unfused"}
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert "3 of 3 blocks" in warning and "blocks.0 (unfused), blocks.1 (unfused), blocks.2 (unfused)" in warning


def test_fp32_opset23_is_one_clear_line(builds: Builds) -> None:
    engine, result = builds.get("esc-light", "native23", "fp32")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "no float32 kernel for the ONNX Attention op" in line and "--fp16" in line
    assert "Myelin" not in line and "Internal Error" not in line
    assert not engine.exists()
