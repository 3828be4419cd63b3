"""export/triton_repo.py and its CLI: every config.pbtxt is parsed with Triton's own ModelConfig schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from export import triton_repo
from export.triton_repo import Profile, RepoSpec, make_repository, model_config, spec_from_engine

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "export" / "make_triton_repo.py"
SIDECAR: dict[str, Any] = {
    "profile": {"min": [1, 3, 32, 32], "opt": [1, 3, 256, 256], "max": [4, 3, 512, 512]},
    "precision": "fp16",
    "tensorrt_version": "10.8.0.43",
    "gpu": {"name": "NVIDIA H100 80GB HBM3"},
    "scale": 4,
}


def parse_config(text: str) -> Any:
    """Triton's ModelConfig protobuf, as the server reads config.pbtxt."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(text, model_config_pb2.ModelConfig())


@pytest.fixture
def engine(tmp_path: Path) -> Path:
    path = tmp_path / "esc-light_x4.plan"
    path.write_bytes(b"not really an engine, but bytes to copy")
    (tmp_path / "esc-light_x4.plan.json").write_text(json.dumps(SIDECAR))
    return path


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    path = tmp_path / "libesc_trt_plugin.so"
    path.write_bytes(b"\x7fELF")
    return path


@pytest.fixture
def onnx_model(tmp_path: Path) -> Path:
    """A stand-in with the exporter's interface: input [B, 3, H, W] -> nearest x4 -> output."""
    import onnx
    from onnx import TensorProto, helper

    dims: list[str | int] = ["batch", 3, "height", "width"]
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 4, 4])
    node = helper.make_node("Resize", ["input", "", "scales"], ["output"], mode="nearest")
    graph = helper.make_graph(
        [node],
        "nearest_x4",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, "h4", "w4"])],
        initializer=[scales],
    )
    path = tmp_path / "esc-light_x4.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_repository_layout_and_configs(tmp_path: Path, engine: Path, plugin: Path, onnx_model: Path) -> None:
    spec = spec_from_engine(engine, plugin=plugin, onnx=onnx_model, window_size=32)
    result = make_repository(spec, tmp_path / "repo")
    repo = result.repo
    assert result.models == ("esc-light_x4", "esc-light_x4_onnx")
    assert (repo / "esc-light_x4" / "1" / "model.plan").read_bytes() == engine.read_bytes()
    assert (repo / "esc-light_x4_onnx" / "1" / "model.onnx").read_bytes() == onnx_model.read_bytes()
    assert sorted(p.name for p in repo.iterdir()) == [
        "docker_triton.sh",
        "esc-light_x4",
        "esc-light_x4_onnx",
        "launch_triton.sh",
    ]

    plan = parse_config((repo / "esc-light_x4" / "config.pbtxt").read_text())
    assert plan.name == "esc-light_x4" and plan.platform == "tensorrt_plan"
    assert plan.max_batch_size == 4
    assert [(t.name, list(t.dims)) for t in plan.input] == [("input", [3, -1, -1])]
    assert [(t.name, list(t.dims)) for t in plan.output] == [("output", [3, -1, -1])]
    assert plan.input[0].data_type == plan.output[0].data_type == 11  # TYPE_FP32
    assert plan.instance_group[0].kind == 1 and plan.instance_group[0].count == 1  # KIND_GPU
    assert plan.dynamic_batching.max_queue_delay_microseconds == 100
    params = {k: v.string_value for k, v in plan.parameters.items()}
    assert params["esc_max_input_hw"] == "512,512" and params["esc_min_input_hw"] == "32,32"
    assert params["esc_scale"] == "4" and params["esc_window_size"] == "32"
    assert params["engine_tensorrt_version"] == "10.8.0.43" and params["engine_precision"] == "fp16"

    cpu = parse_config((repo / "esc-light_x4_onnx" / "config.pbtxt").read_text())
    assert cpu.platform == "onnxruntime_onnx" and cpu.name == "esc-light_x4_onnx"
    assert cpu.instance_group[0].kind == 2  # KIND_CPU
    assert list(cpu.input[0].dims) == [3, -1, -1] and cpu.max_batch_size == 4


def test_launch_commands(tmp_path: Path, engine: Path, plugin: Path) -> None:
    result = make_repository(spec_from_engine(engine, plugin=plugin), tmp_path / "repo")
    assert result.launch == [
        "tritonserver",
        f"--model-repository={tmp_path.resolve() / 'repo'}",
        f"--backend-config=tensorrt,plugins={plugin.resolve()}",
    ]
    assert "--backend-config=tensorrt,plugins=/plugins/libesc_trt_plugin.so" in result.docker
    assert f"{plugin.resolve().parent}:/plugins:ro" in result.docker
    script = (result.repo / "launch_triton.sh").read_text()
    assert script.startswith("#!/bin/sh\n") and "TensorRT 10.8.0.43" in script
    assert f"--backend-config=tensorrt,plugins={plugin.resolve()}" in script
    assert (result.repo / "launch_triton.sh").stat().st_mode & 0o111


@pytest.mark.parametrize(
    ("profile", "max_batch", "expected"),
    [
        ({"min": [1, 3, 8, 8], "opt": [1, 3, 8, 8], "max": [1, 3, 64, 64]}, None, (1, [3, -1, -1])),
        ({"min": [1, 3, 8, 8], "opt": [2, 3, 8, 8], "max": [8, 3, 64, 64]}, 2, (2, [3, -1, -1])),
        ({"min": [2, 3, 8, 8], "opt": [4, 3, 8, 8], "max": [4, 3, 64, 64]}, None, (0, [-1, 3, -1, -1])),
        ({"min": [4, 3, 8, 8], "opt": [4, 3, 8, 8], "max": [4, 3, 64, 64]}, None, (0, [4, 3, -1, -1])),
        (None, 3, (3, [3, -1, -1])),
    ],
)
def test_batch_layout(profile: dict | None, max_batch: int | None, expected: tuple) -> None:
    parsed = Profile.from_dict(profile, "test") if profile else None
    spec = RepoSpec(name="m", engine=Path("m.plan"), profile=parsed, max_batch=max_batch)
    assert spec.batch_layout() == expected
    config = parse_config(model_config(spec, onnx=False))
    assert config.max_batch_size == expected[0] and list(config.input[0].dims) == expected[1]
    assert config.HasField("dynamic_batching") == (expected[0] > 1)


@pytest.mark.parametrize(
    ("profile", "max_batch", "message"),
    [
        ({"min": [1, 3, 8, 8], "opt": [1, 3, 8, 8], "max": [2, 3, 8, 8]}, 4, "exceeds"),
        ({"min": [2, 3, 8, 8], "opt": [2, 3, 8, 8], "max": [2, 3, 8, 8]}, 2, "cannot batch"),
        ({"min": [1, 1, 8, 8], "opt": [1, 1, 8, 8], "max": [1, 1, 8, 8]}, None, "b>=1, 3"),
        ({"min": [1, 3, 9, 8], "opt": [1, 3, 8, 8], "max": [1, 3, 8, 8]}, None, "min <= opt <= max"),
        ({"min": [1, 3, 8], "opt": [1, 3, 8, 8], "max": [1, 3, 8, 8]}, None, "profile.min"),
    ],
)
def test_bad_profiles(profile: dict, max_batch: int | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RepoSpec(name="m", engine=Path("m.plan"), profile=Profile.from_dict(profile, "x"), max_batch=max_batch)


def test_build_engine_sidecar_format(tmp_path: Path) -> None:
    """export/build_engine.py spells shapes '1x3x64x64', nests the GPU and records tensor names."""
    engine = tmp_path / "esc-light_x4-abc.engine"
    engine.write_bytes(b"x")
    sidecar: dict[str, Any] = {
        "profile": {"min": "1x3x16x16", "opt": "2x3x64x64", "max": "8x3x256x384"},
        "precision": "fp32",
        "tensorrt_version": "10.13.3",
        "gpu": {"name": "NVIDIA H100"},
        "input_name": "lr",
        "output_name": "sr",
    }
    (tmp_path / "esc-light_x4-abc.engine.json").write_text(json.dumps(sidecar))
    spec = spec_from_engine(engine)
    assert spec.name == "esc-light_x4-abc" and spec.batch_layout() == (8, [3, -1, -1])
    config = parse_config(model_config(spec, onnx=False))
    assert (config.input[0].name, config.output[0].name) == ("lr", "sr")
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params["esc_max_input_hw"] == "256,384" and params["engine_gpu_name"] == "NVIDIA H100"
    sidecar["profile"]["max"] = "8x3x256"
    (tmp_path / "esc-light_x4-abc.engine.json").write_text(json.dumps(sidecar))
    with pytest.raises(ValueError, match=r"profile\.max"):
        spec_from_engine(engine)


def test_missing_sidecar_needs_max_batch(tmp_path: Path) -> None:
    engine = tmp_path / "bare.plan"
    engine.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"no sidecar bare\.plan\.json .* pass --max-batch"):
        spec_from_engine(engine)
    spec = spec_from_engine(engine, max_batch=2)
    assert spec.batch_layout() == (2, [3, -1, -1]) and "esc_max_input_hw" not in spec.parameters()


def test_failure_leaves_nothing(tmp_path: Path, engine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(triton_repo.shutil, "copyfile", broken)
    with pytest.raises(OSError, match="disk full"):
        make_repository(spec_from_engine(engine), tmp_path / "repo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["esc-light_x4.plan", "esc-light_x4.plan.json"]


def test_overwrite(tmp_path: Path, engine: Path) -> None:
    out = tmp_path / "repo"
    make_repository(spec_from_engine(engine), out)
    with pytest.raises(ValueError, match="already exists"):
        make_repository(spec_from_engine(engine), out)
    make_repository(spec_from_engine(engine, name="renamed"), out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["docker_triton.sh", "launch_triton.sh", "renamed"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


def test_cli(tmp_path: Path, engine: Path, plugin: Path) -> None:
    out = tmp_path / "repo"
    proc = _cli("--engine", str(engine), "--plugin", str(plugin), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"--backend-config=tensorrt,plugins={plugin.resolve()}" in proc.stdout
    parse_config((out / "esc-light_x4" / "config.pbtxt").read_text())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--engine", "{tmp}/missing.plan"], "does not exist"),
        (["--engine", "{engine}", "--plugin", "{tmp}/nope.so"], "plugin"),
        (["--engine", "{engine}", "--onnx", "{engine}"], "not a readable ONNX model"),
        (["--engine", "{engine}", "--max-batch", "9"], "exceeds"),
        (["--engine", "{engine}", "--name", "bad name"], "model name"),
    ],
)
def test_cli_errors(tmp_path: Path, engine: Path, args: list[str], message: str) -> None:
    out = tmp_path / "repo"
    args = [a.format(tmp=tmp_path, engine=engine) for a in args]
    proc = _cli(*args, "--output", str(out))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
