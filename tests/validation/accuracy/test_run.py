"""The parity run end to end on a real checkpoint (real_x4: two blocks), real photographs and real
ONNX Runtime sessions; an induced failure is localised to the right block."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage import data

import esc
from esc_deploy.validation.accuracy import cli as parity
from esc_deploy.validation.accuracy import stats as parity_stats
from esc_deploy.validation.accuracy.drift import block_output_values, node_scopes
from esc_deploy.validation.accuracy.stats import Threshold
from esc_deploy.validation.accuracy.suite import ParityOptions, run_parity
from esc_deploy.validation.backends import RunOutputs, export_graphs
from esc_deploy.validation.images import InputImage, load_inputs
from tests.conftest import GOLDEN_DIR

CHECKPOINT = GOLDEN_DIR / "real_x4.pth"
MAX_SIDE = "40"
CALIBRATION = ["--calibration-shape", "64x64"]  # the bundled photographs only: no large input, a short run


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.chelsea()).save(folder / "chelsea.png")
    Image.fromarray(data.rocket()).save(folder / "rocket.jpg", quality=95)
    return folder


@pytest.fixture(scope="module")
def model() -> esc.ESCBase:
    return esc.load_model(CHECKPOINT, attention="naive")


@pytest.fixture(scope="module")
def inputs(model: esc.ESCBase, photos: Path) -> list[InputImage]:
    return load_inputs(scale=4, min_side=model.config.min_side, folder=photos, max_side=int(MAX_SIDE))


def _perturbed(proto: Any, block: int) -> Any:
    """A copy whose largest weight used only inside blocks.<block> is scaled by 1.05."""
    import onnx
    from onnx import numpy_helper

    scope = f"blocks.{block}"
    users: dict[str, set[bool]] = {}
    for node in proto.graph.node:
        inside = scope in node_scopes(node)
        for name in node.input:
            users.setdefault(name, set()).add(inside)
    candidates = [i for i in proto.graph.initializer if users.get(i.name) == {True} and len(i.dims) == 4]
    target = max(candidates, key=lambda i: int(np.prod(i.dims)))
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for init in copy.graph.initializer:
        if init.name == target.name:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.05), init.name))
    return copy


def test_cli_default_backends_pass_and_write_the_report(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report"
    argv = ["--checkpoint", str(CHECKPOINT), "--images", str(photos), "--max-side", MAX_SIDE, *CALIBRATION]
    code = parity.main([*argv, "--report-dir", str(report), "--save-outputs"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.strip().splitlines()[-1].endswith(f"report: {report / 'parity.md'}")
    for name in ("parity.json", "parity.md", "parity.png"):
        assert (report / name).stat().st_size > 0
    result = json.loads((report / "parity.json").read_text())
    status = {b["name"]: b["status"] for b in result["backends"]}
    assert status == {
        "torch-fp32": "reference",
        "torch-fp16": "PASS",  # torch 2.13 runs float16 convolutions on the CPU
        "onnxruntime-plugin": "PASS",
        "onnxruntime-native": "PASS",
        "onnxruntime-fp16-plugin": "PASS",
        "onnxruntime-fp16-native": "PASS",
        "tensorrt": "skipped",
        "tensorrt-fused": "skipped",  # both engine kinds need a GPU to run
    }
    for name in ("tensorrt", "tensorrt-fused"):
        trt = next(b for b in result["backends"] if b["name"] == name)
        assert trt["reason"] and trt["comparison"] is None and trt["line"].startswith(f"skipped: {name}: ")
        assert f"skipped: {name}: {trt['reason']}" in out
    fp32 = next(b for b in result["backends"] if b["name"] == "onnxruntime-native")["comparison"]
    assert fp32["stats"]["max_abs"] <= 1e-4 and set(fp32["per_image"]) == {"chelsea", "rocket"}
    assert [c["verdict"] for c in result["cross_checks"]] == ["PASS", "PASS"]  # Polygraphy: native vs plugin
    assert [i["size"] for i in result["inputs"]] == [[27, 40], [27, 40]]
    assert result["machine"]["torch"] and result["machine"]["cpu"]
    # the figure's fp16 panel: each block's float32 max |activation| (real_x4: two blocks, well in range)
    assert list(result["block_max_abs"]) == ["blocks.0", "blocks.1"]
    assert all(0 < v < 65504 / 8 for v in result["block_max_abs"].values())
    assert result["fp16_calibration"]["inputs"][0].startswith("astronaut ")
    saved = RunOutputs.load(report / "outputs" / "onnxruntime-plugin.npz")
    assert saved.backend == "onnxruntime-plugin" and saved.outputs["rocket"].shape == (1, 3, 108, 160)


@pytest.mark.parametrize("block", [0, 1])
def test_a_perturbed_block_is_named(model: esc.ESCBase, inputs: list[InputImage], block: int) -> None:
    native = export_graphs(model, ["native"])["native"]
    assert list(block_output_values(native)) == [0, 1]
    broken = _perturbed(native, block)
    options = ParityOptions(backends=("onnxruntime-native",))
    result = run_parity(model, inputs, options, graphs={"native": broken}, log=lambda _: None)
    r = result.result("onnxruntime-native")
    assert not result.passed and r.status == "FAIL"
    assert r.drift is not None
    assert r.drift.first_block == block, r.drift.line()
    assert [s.exceeded for s in r.drift.stages[:block]] == [False] * block
    assert f"first at blocks.{block}" in r.drift.line()


def test_tightened_threshold_fails_the_cli_and_localises(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(parity_stats.THRESHOLDS, "onnxruntime-fp16-native", Threshold(max_abs=1e-5))
    argv = ["--checkpoint", str(CHECKPOINT), "--images", str(photos), "--max-side", MAX_SIDE, *CALIBRATION]
    code = parity.main([*argv, "--backends", "onnxruntime-fp16-native", "--report-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL onnxruntime-fp16-native vs torch-fp32" in out and "drift: onnxruntime-fp16-native" in out
    backend = json.loads((tmp_path / "parity.json").read_text())["backends"][1]
    assert backend["status"] == "FAIL" and backend["drift"]["first_stage"] == "blocks.0"  # fp16 drifts at once
    assert "## Drift localisation" in (tmp_path / "parity.md").read_text()


@pytest.mark.parametrize(
    "argv", [["--backends", "onnxruntime,bogus"], ["--max-side", "-1"], ["--images", "/nonexistent/dir"]]
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parity.main(argv)
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
