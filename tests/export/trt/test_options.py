"""EngineOptions: frozen, one kind per field, the cache key, the default file name.

The sidecar is tested on sidecars the real build writes (tests/export/trt/test_rtx.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from esc_deploy.common.defaults import OUTPUT_DIR
from esc_deploy.export.shape_profile import ShapeProfile
from esc_deploy.export.trt.env import GpuInfo
from esc_deploy.export.trt.options import (
    EngineOptions,
    Precision,
    cache_key,
    default_engine_name,
    engine_path,
    fp16_onnx_path,
    identity_hashes,
    sidecar_path,
    slug,
)

GPU = GpuInfo(name="NVIDIA GeForce RTX 4090", compute_capability=(8, 9))
TRT = "trt10.13.0.35"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_options_are_frozen_and_hashable() -> None:
    options = EngineOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.precision = Precision.FP16  # type: ignore[misc]
    assert hash(options) == hash(EngineOptions())
    assert options != EngineOptions(precision=Precision.FP16)


def test_every_field_has_a_kind() -> None:
    kinds = {f.name: f.metadata.get("kind") for f in dataclasses.fields(EngineOptions)}
    assert set(kinds.values()) == {"setting", "identity", "location", "choice"}
    assert kinds["runtime"] == kinds["compute_capabilities"] == "choice"
    assert kinds["onnx"] == kinds["plugin"] == "identity"
    assert kinds["output"] == kinds["timing_cache"] == "location"


def test_settings_are_json_and_exclude_paths() -> None:
    settings = EngineOptions(precision=Precision.FP16, workspace_gb=2.0).settings()
    assert settings == {
        "precision": "fp16",
        "calibration": "auto",
        "profile": {"min": "1x3x64x64", "opt": "1x3x360x640", "max": "1x3x1080x1920"},
        "workspace_gb": 2.0,
        "input_name": "input",
        "output_name": "output",
    }
    json.dumps(settings)


def test_calibration_must_be_auto_off_or_a_folder(tmp_path: Path) -> None:
    assert EngineOptions(calibration=str(tmp_path)).calibration == str(tmp_path)
    with pytest.raises(ValueError, match="calibration: expected 'auto', 'off' or a folder"):
        EngineOptions(calibration=str(tmp_path / "missing"))


@pytest.mark.parametrize("workspace", [0.0, -1.0])
def test_workspace_must_be_positive(workspace: float) -> None:
    with pytest.raises(ValueError, match="workspace: expected a positive number of GiB"):
        EngineOptions(workspace_gb=workspace)


def test_workspace_bytes() -> None:
    assert EngineOptions().workspace_bytes is None
    assert EngineOptions(workspace_gb=1.5).workspace_bytes == 3 << 29


def test_precision_must_be_the_enum() -> None:
    with pytest.raises(ValueError, match="precision: expected one of"):
        EngineOptions(precision="fp16")  # type: ignore[arg-type]


def test_identity_hashes_use_file_content(tiny_fp32_onnx: Path, stand_in_plugin: Path) -> None:
    options = EngineOptions(onnx=tiny_fp32_onnx, plugin=stand_in_plugin)
    assert identity_hashes(options) == {"onnx": sha(tiny_fp32_onnx), "plugin": sha(stand_in_plugin)}
    assert identity_hashes(EngineOptions(onnx=tiny_fp32_onnx, plugin=None)) == {
        "onnx": sha(tiny_fp32_onnx),
        "plugin": None,
    }


def _key(options: EngineOptions, trt: str = TRT, gpu: str = GPU.name, onnx: str = "a" * 64) -> str:
    return cache_key(options.settings(), {"onnx": onnx, "plugin": "b" * 64}, trt, gpu)


def test_cache_key_changes_with_what_changes_the_engine() -> None:
    base = EngineOptions()
    key = _key(base)
    assert key == _key(EngineOptions())
    others = [
        _key(EngineOptions(precision=Precision.FP16)),
        _key(EngineOptions(workspace_gb=4)),
        _key(EngineOptions(profile=ShapeProfile((1, 3, 64, 64), (1, 3, 64, 64), (1, 3, 64, 64)))),
        _key(base, trt="10.14.0.1"),
        _key(base, gpu="NVIDIA H100"),
        _key(base, onnx="c" * 64),
    ]
    assert len({key, *others}) == len(others) + 1


def test_cache_key_ignores_locations(tmp_path: Path) -> None:
    moved = EngineOptions(output=tmp_path / "x.engine", timing_cache=tmp_path / "t.cache")
    assert _key(moved) == _key(EngineOptions())


def test_default_engine_name() -> None:
    options = EngineOptions(onnx=Path("engines/esc-light_x4.onnx"), precision=Precision.FP16)
    key = _key(options)
    name = default_engine_name(options, "0123456789abcdef" * 4, key, TRT, GPU.name)
    assert name == f"esc-light_x4_fp16_onnx01234567_trt10.13.0.35_nvidia-geforce-rtx-4090_{key[:8]}.engine"
    assert engine_path(options, "0" * 64, key, TRT, GPU.name) == OUTPUT_DIR / default_engine_name(
        options, "0" * 64, key, TRT, GPU.name
    )
    chosen = Path("/tmp/mine.engine")
    assert engine_path(dataclasses.replace(options, output=chosen), "0" * 64, key, TRT, GPU.name) == chosen


def test_derived_paths() -> None:
    assert slug("NVIDIA A100-SXM4-80GB (MIG 1g.10gb)") == "nvidia-a100-sxm4-80gb-mig-1g.10gb"
    assert sidecar_path(Path("e/x.engine")) == Path("e/x.engine.json")
    assert fp16_onnx_path(Path("e/m.onnx")) == Path("e/m.fp16.onnx")


def test_runtime_and_targets_are_checked() -> None:
    with pytest.raises(ValueError, match="runtime: expected one of"):
        EngineOptions(runtime="tensorrt-lean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="compute capability: expected at least one"):
        EngineOptions(compute_capabilities=())
