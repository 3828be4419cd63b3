"""Calibrated fp16 on a checkpoint in the official format, made here: the seeded default model with one
layer's weights scaled by 1e7, so that float32 activations exceed 1e6 inside blocks.1
(blocks.1.pconvs.2.aggr onwards, until blocks.1.ln_out normalises them).

Every fp16 backend that runs on the CPU (torch-fp16, ONNX Runtime fp16 on the plugin and native
graphs) is judged by the parity suite against torch float32 on real photographs. The default model
itself, calibrated as every command does by default, is the CI parity report's
(tests/validation/accuracy/test_default_report.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from skimage import data

import esc
from esc.fp16 import FP16_MAX, SAFE_LIMIT, fp32_modules, is_fp16_safe, measure_module_ranges, to_mixed_half
from esc_deploy.common.defaults import REPO_ROOT
from esc_deploy.export.onnx_graph.calibration import FP16_KEY, fp16_record
from esc_deploy.export.onnx_graph.calibration_set import calibration_for
from esc_deploy.export.onnx_graph.exporter import fp16_summary
from esc_deploy.export.onnx_graph.fp16 import convert_to_mixed_fp16
from esc_deploy.validation.accuracy.suite import ParityOptions, run_parity
from esc_deploy.validation.images import load_inputs
from tests.conftest import ExportCache

# The scaled checkpoint's parity runs, fp16 conversion, engine build and ONNX fixture run on one worker and
# share one export per graph (tests/conftest.py's ExportCache).
SCALED_EXPORTS = pytest.mark.xdist_group("scaled")

SCALED_LAYER = "blocks.1.pconvs.2.aggr"
SCALE = 1e7
CALIBRATION_SHAPE = (64, 64)  # within the photographs' cap (two windows): no extra large input, a short run
FP16_BACKENDS = ("torch-fp16", "onnxruntime-fp16-plugin", "onnxruntime-fp16-native")


@pytest.fixture(scope="module")
def scaled_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seeded default ESC-light x4 with SCALED_LAYER x SCALE, as ``{'params_ema': ...}``."""
    from esc_deploy.common.defaults import default_model

    state = default_model().state_dict()
    for key in (f"{SCALED_LAYER}.weight", f"{SCALED_LAYER}.bias"):
        state[key] = state[key] * SCALE
    path = tmp_path_factory.mktemp("checkpoints") / "scaled_x4.pth"
    torch.save({"params_ema": state}, path)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.chelsea()).save(folder / "chelsea.png")
    Image.fromarray(data.coffee()).save(folder / "coffee.png")
    return folder


def _parity(checkpoint: Path, photos: Path, calibration: str) -> object:
    model = esc.load_model(checkpoint)
    inputs = load_inputs(scale=4, min_side=model.config.min_side, folder=photos, max_side=48)
    options = ParityOptions(backends=FP16_BACKENDS, calibration=calibration, calibration_shape=CALIBRATION_SHAPE)
    return run_parity(model, inputs, options, log=lambda _line: None)


def test_the_rule_and_its_margin() -> None:
    assert SAFE_LIMIT == FP16_MAX / 8
    assert is_fp16_safe(SAFE_LIMIT) and not is_fp16_safe(SAFE_LIMIT * 1.001)
    assert not is_fp16_safe(float("nan")) and not is_fp16_safe(float("inf"))


def test_scaled_checkpoint_overflows_fp32_activations_in_blocks_1(scaled_checkpoint: Path) -> None:
    model = esc.load_model(scaled_checkpoint, attention="sdpa")
    x = torch.from_numpy(np.asarray(data.astronaut()[::4, ::4], dtype=np.float32) / 255).permute(2, 0, 1)[None]
    ranges = measure_module_ranges(model, [x.contiguous()])
    assert ranges[SCALED_LAYER].max_out > 1e6
    kept = fp32_modules(ranges)
    assert kept and all(name.startswith("blocks.1.") for name in kept), kept
    mixed, names = to_mixed_half(model, ranges)
    parameters = dict(mixed.named_parameters())
    assert parameters[f"{SCALED_LAYER}.weight"].dtype == torch.float32  # from the original: not inf
    assert torch.isfinite(parameters[f"{SCALED_LAYER}.weight"]).all()
    assert parameters["blocks.0.proj.proj.weight"].dtype == torch.float16
    assert names == kept


def test_unsafe_shared_kernel_keeps_the_whole_model_in_float32() -> None:
    """The large kernel is the root's own weight, read by every block: the rule can only keep all of it."""
    from esc_deploy.common.defaults import default_model

    model = default_model()
    state = model.state_dict()
    state["plk_filter"] = state["plk_filter"] * 1e5
    model.load_state_dict(state)
    x = torch.rand(1, 3, 40, 40)
    mixed, kept = to_mixed_half(model, measure_module_ranges(model, [x]))
    assert kept == [""]
    with torch.no_grad():
        y = mixed(x.half())  # float16 in, as torch-fp16 feeds it
    assert y.dtype == torch.float32 and torch.isfinite(y).all()


def test_float32_flows_between_kept_modules_and_rounds_where_fp16_reads_it() -> None:
    """As the ONNX conversion casts at the consumer: kept blocks in a row pass float32 (the reported ESC x3
    case lost 40 dB to a round trip between them), the large kernel reaches a kept block unrounded, and a
    float16 block still reads float16."""
    from esc_deploy.common.defaults import default_model

    model = default_model()
    x = torch.rand(1, 3, 40, 40)
    mixed, kept = to_mixed_half(model, measure_module_ranges(model, [x]), extra=["blocks.0", "blocks.1"])
    assert kept == ["blocks.0", "blocks.1"]
    seen: dict[str, list[torch.Tensor]] = {}

    def record(name: str) -> object:
        return lambda _module, args: seen.setdefault(name, list(args)) and None  # after the cast, registered later

    for name in ("blocks.1", "blocks.2"):
        mixed.get_submodule(name).register_forward_pre_hook(record(name))
    with torch.no_grad():
        mixed(x.half())
    feat, kernel = seen["blocks.1"]
    assert feat.dtype == kernel.dtype == torch.float32
    assert torch.equal(kernel, model.large_kernel().detach())  # the float32 model's own kernel
    assert [t.dtype for t in seen["blocks.2"]] == [torch.float16, torch.float16]


@SCALED_EXPORTS
def test_every_fp16_backend_passes_with_calibration(scaled_checkpoint: Path, photos: Path) -> None:
    """Calibrated on a folder of photographs (the default set: test_calibrated_export_lists_the_overflowing_block).
    The default model's fp16 backends pass in the CI parity report (test_default_report.py)."""
    result = _parity(scaled_checkpoint, photos, str(photos))
    lines = "\n".join(result.lines())
    for backend in FP16_BACKENDS:
        r = result.result(backend)
        assert r.status == "PASS", lines
        assert all(np.isfinite(y).all() for y in r.run.outputs.values())
    assert [i.split()[0] for i in result.calibration["inputs"]] == ["chelsea", "coffee"]
    # eager fp16 keeps the same block in float32 as the calibrated graphs
    assert "modules in float32 by the fp16 rule" in result.result("torch-fp16").run.description


@SCALED_EXPORTS
def test_without_calibration_the_diagnosis_names_the_overflow(scaled_checkpoint: Path, photos: Path) -> None:
    result = _parity(scaled_checkpoint, photos, "off")
    for backend in FP16_BACKENDS:
        r = result.result(backend)
        assert r.status == "FAIL"
        line = r.fp16_diagnosis
        assert line.startswith(f"fp16: {backend}: first overflow at ") and f"> {FP16_MAX:g}" in line, line
        assert SCALED_LAYER.rsplit(".", 1)[0] in line  # blocks.1.pconvs.2 (the module or the node's scope)
        assert "python export/to_onnx.py --precision fp16 --calibration auto" in line
        assert line in result.lines() and "\n" not in line


def _to_onnx(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(REPO_ROOT / "export" / "to_onnx.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=900)


def _fp16_metadata(path: Path) -> dict:
    record = fp16_record(onnx.load(str(path)))
    assert record is not None, f"no {FP16_KEY} metadata in {path}"
    return record


@SCALED_EXPORTS
def test_calibrated_export_lists_the_overflowing_block(
    scaled_checkpoint: Path, scaled_fp32_onnx: Path, tmp_path: Path
) -> None:
    """The fp16 conversion of `to_onnx.py --precision fp16` and `build_engine.py --fp16`, with the default
    calibration set, on the parity tests' export (the command line itself: tests/export/onnx_graph/test_cli.py)."""
    config = esc.load_model(scaled_checkpoint).config
    calibration = calibration_for("auto", config, large_shape=CALIBRATION_SHAPE)
    out, reused = convert_to_mixed_fp16(scaled_fp32_onnx, tmp_path / "scaled_fp16.onnx", calibration)
    assert not reused
    info = _fp16_metadata(out)
    assert info["calibrated"] and info["fp32_reasons"]["output over the fp16 limit"] > 0
    assert f"{SCALED_LAYER}" in info["unsafe_scopes"]
    # blocks.1 itself: its residual sums, written in Block.forward
    assert all(s == "blocks.1" or s.startswith("blocks.1.") for s in info["unsafe_scopes"]), info["unsafe_scopes"]
    line = fp16_summary(onnx.load(str(out)))  # what the commands print
    assert line.startswith("fp16: ") and "over the limit in blocks.1." in line, line


def _write_tiny(folder: Path) -> None:
    Image.fromarray(data.astronaut()[:40, :40]).save(folder / "tiny.png")


BAD_CALIBRATIONS = {
    "no images": (lambda folder: None, "no .png/.jpg/.jpeg files in"),
    "unreadable": (lambda folder: (folder / "broken.png").write_bytes(b"not a png"), "cannot read"),
    "too small": (_write_tiny, "the model needs sides >="),
}


@pytest.mark.parametrize("case", list(BAD_CALIBRATIONS))
def test_bad_calibration_folder_is_one_line_exit_2_nothing_written(case: str, tmp_path: Path) -> None:
    folder = tmp_path / "calibration"
    folder.mkdir()
    make, message = BAD_CALIBRATIONS[case]
    make(folder)
    out = tmp_path / "out.onnx"
    result = _to_onnx("--precision", "fp16", "--calibration", str(folder), "--output", str(out))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [folder]


@pytest.fixture(scope="module")
def scaled_fp32_onnx(exports: ExportCache, scaled_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scaled_onnx") / "scaled_x4.onnx"
    onnx.save(exports.proto(scaled_checkpoint), str(path))  # the parity tests' export
    return path


SMALL_PROFILE = ("--min-shape", "1x3x64x64", "--opt-shape", "1x3x96x96", "--max-shape", "1x3x96x96")


@pytest.mark.tensorrt_rtx
@SCALED_EXPORTS
def test_tensorrt_rtx_builds_the_calibrated_islands_in_float(
    scaled_fp32_onnx: Path, trt11_plugin: Path, tmp_path: Path
) -> None:
    """The real TensorRT for RTX builder (no GPU: nothing runs) parses the calibrated fp16 file: the
    convolutions of the overflowing block compute in float32, every other convolution in half."""
    from esc_deploy.export.trt.layer_log import engine_layers
    from esc_deploy.export.trt.options import build_log_path
    from esc_deploy.export.trt.sidecar import EngineSidecar

    engine = tmp_path / "scaled_fp16.engine"
    command = [sys.executable, str(REPO_ROOT / "export" / "build_engine.py"), "--fp16", "--runtime", "tensorrt-rtx",
               "--no-progress", "--onnx", str(scaled_fp32_onnx), "--plugin", str(trt11_plugin),
               "--compute-capability", "8.9", *SMALL_PROFILE, "--output", str(engine)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=900)
    assert result.returncode == 0, result.stderr
    built = Path(EngineSidecar.read(engine).built_onnx.path)
    info = _fp16_metadata(built)
    assert info["calibrated"] and SCALED_LAYER in info["unsafe_scopes"]
    kept = set(info["fp32_node_names"])
    convolutions = [layer for layer in engine_layers(build_log_path(engine).read_text().splitlines())
                    if layer.kind == "correlation"]  # fmt: skip
    float_convs = [c for c in convolutions if {t.dtype for t in c.inputs} == {"Float"}]
    half_convs = [c for c in convolutions if {t.dtype for t in c.inputs} == {"Half"}]
    assert float_convs and half_convs and len(float_convs) + len(half_convs) == len(convolutions)
    assert all(set(c.onnx_nodes) <= kept for c in float_convs), [c.onnx_nodes for c in float_convs]
    assert not any(set(c.onnx_nodes) & kept for c in half_convs)


@pytest.mark.tensorrt_rtx
@SCALED_EXPORTS
def test_weak_typing_pins_map_every_calibrated_node_to_its_layers(scaled_fp32_onnx: Path) -> None:
    """TensorRT 10.x pins the layers of the calibrated nodes (esc_deploy.export.trt.build.pin_fp32_layers); 10.x
    cannot be installed here, so the name mapping is checked on the real ONNX parser of TensorRT for RTX."""
    import tensorrt_rtx_bindings as trt

    from esc_deploy.export.shape_profile import ShapeProfile
    from esc_deploy.export.trt.build import layer_node
    from esc_deploy.export.trt.fp16 import calibrated_fp32_nodes
    from esc_deploy.export.trt.options import EngineOptions

    profile = ShapeProfile.parse("1x3x64x64", "1x3x96x96", "1x3x96x96")
    nodes = calibrated_fp32_nodes(EngineOptions(onnx=scaled_fp32_onnx, plugin=None, profile=profile))
    assert nodes
    logger = trt.Logger(trt.Logger.ERROR)
    network = trt.Builder(logger).create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(scaled_fp32_onnx)), parser.get_error(0)
    layers = [network.get_layer(i).name for i in range(network.num_layers)]
    mapped = {layer_node(name, nodes) for name in layers} - {None}
    convs = {n for n in nodes if n.startswith("node_conv2d")}
    assert convs and convs <= mapped, sorted(convs - mapped)[:5]
