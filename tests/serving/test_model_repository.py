"""serving/model_repository/writer.py and its CLI: every config.pbtxt is parsed with Triton's own ModelConfig schema.

(The real server loads them in tests/serving/test_local_server.py.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from esc_deploy.export.trt.sidecar import EngineSidecar
from esc_deploy.serving.model_repository import writer as triton_repo
from esc_deploy.serving.model_repository.writer import config_text, make_repository, model_config, spec_from_files
from tests.export.trt.sidecars import build_engine_for, write_stand_in_onnx

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "serving" / "make_triton_repo.py"


def parse_config(text: str) -> Any:
    """Triton's ModelConfig protobuf, as the server reads config.pbtxt."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(text, model_config_pb2.ModelConfig())


def params_of(config: Any) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}


@pytest.fixture
def onnx_model(tmp_path: Path) -> Path:
    return write_stand_in_onnx(tmp_path / "esc-light_x4.onnx")


@pytest.fixture
def engine(tmp_path: Path, onnx_model: Path) -> Path:
    return build_engine_for(onnx_model, tmp_path)


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    path = tmp_path / "libesc_trt_plugin.so"
    path.write_bytes(b"\x7fELF")
    return path


def test_repository_layout_and_configs(tmp_path: Path, engine: Path, plugin: Path, onnx_model: Path) -> None:
    result = make_repository(spec_from_files(engine=engine, plugin=plugin, onnx=onnx_model), tmp_path / "repo")
    repo = result.repo
    assert result.models == (
        "esc-light_x4",
        "esc-light_x4_onnx",
        "esc-light_x4_python",
        "esc-light_x4_image",
        "esc-light_x4_image_bytes",
    )
    assert (repo / "esc-light_x4" / "1" / "model.plan").read_bytes() == engine.read_bytes()
    for variant in ("onnx", "python"):
        assert (repo / f"esc-light_x4_{variant}" / "1" / "model.onnx").read_bytes() == onnx_model.read_bytes()
    assert (repo / "esc-light_x4_python" / "1" / "model.py").read_text() == triton_repo.PYTHON_MODEL.read_text()
    assert sorted(p.name for p in repo.iterdir()) == [
        "docker_triton.sh",
        "esc-light_x4",
        "esc-light_x4_image",
        "esc-light_x4_image_bytes",
        "esc-light_x4_onnx",
        "esc-light_x4_python",
        "launch_triton.sh",
    ]
    for image in ("esc-light_x4_image", "esc-light_x4_image_bytes"):
        assert (repo / image / "1" / "model.py").read_text() == triton_repo.IMAGE_MODEL.read_text()

    sidecar = EngineSidecar.read(engine)
    plan = parse_config((repo / "esc-light_x4" / "config.pbtxt").read_text())
    assert plan.name == "esc-light_x4" and plan.platform == "tensorrt_plan"
    assert plan.max_batch_size == 4
    assert [(t.name, list(t.dims)) for t in plan.input] == [("input", [3, -1, -1])]
    assert [(t.name, list(t.dims)) for t in plan.output] == [("output", [3, -1, -1])]
    assert plan.input[0].data_type == plan.output[0].data_type == 11  # TYPE_FP32
    assert plan.instance_group[0].kind == 1 and plan.instance_group[0].count == 1  # KIND_GPU
    assert plan.dynamic_batching.max_queue_delay_microseconds == 100
    assert params_of(plan) == {
        "esc_min_input_hw": "32,32",  # the profile's
        "esc_max_input_hw": "96,96",
        "esc_scale": "4",  # from the sidecar, which has it from the ONNX metadata: nobody passed it
        "esc_window_size": "32",
        "esc_family": "esc",
        "engine_runtime": "tensorrt-rtx",
        "engine_runtime_version": sidecar.runtime_version,
        "engine_target": "compute capabilities 8.9",
        "engine_precision": "fp32",
    }

    assert dict(plan.cc_model_filenames) == {"8.9": "model.plan"}  # the sidecar's target
    assert _warmups(plan) == [("minimum 32x32", 1, [3, 32, 32]), ("maximum tile 96x96", 1, [3, 96, 96])]

    ort_params = {
        "esc_min_input_hw": "17,17",  # the model's minimum side, not the engine's profile
        "esc_max_input_hw": "256,256",  # the ONNX Runtime variants' own default limit
        "esc_scale": "4",
        "esc_window_size": "32",
        "esc_family": "esc",
    }
    cpu = parse_config((repo / "esc-light_x4_onnx" / "config.pbtxt").read_text())
    assert cpu.platform == "onnxruntime_onnx" and cpu.name == "esc-light_x4_onnx"
    assert cpu.instance_group[0].kind == 2  # KIND_CPU
    assert list(cpu.input[0].dims) == [3, -1, -1] and cpu.max_batch_size == 2  # its own default
    assert params_of(cpu) == ort_params

    python = parse_config((repo / "esc-light_x4_python" / "config.pbtxt").read_text())
    assert python.backend == "python" and not python.platform and python.name == "esc-light_x4_python"
    assert python.instance_group[0].kind == 0  # KIND_AUTO: GPU where there is one
    assert [(t.name, list(t.dims)) for t in python.input] == [("input", [3, -1, -1])]
    assert [(t.name, list(t.dims)) for t in python.output] == [("output", [3, -1, -1])]
    assert python.max_batch_size == 2 and python.HasField("dynamic_batching")
    assert params_of(python) == ort_params
    for config in (cpu, python):
        assert _warmups(config) == [("minimum 17x17", 1, [3, 17, 17]), ("maximum tile 256x256", 1, [3, 256, 256])]
        assert not config.cc_model_filenames

    images = (("esc-light_x4_image", "pixels", [-1, -1, -1]), ("esc-light_x4_image_bytes", "encoded", [-1]))
    for image, io, dims in images:
        config = parse_config((repo / image / "config.pbtxt").read_text())
        assert config.backend == "python" and config.max_batch_size == 0
        assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [("IMAGE", 2, dims)]  # TYPE_UINT8
        assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [("IMAGE", 2, dims)]
        assert config.instance_group[0].count == 2 and not config.model_warmup
        assert params_of(config) == params_of(plan) | {  # the tensor model's facts and limits: the plan's
            "esc_image_io": io,
            "esc_max_pixels": str(2048 * 2048),
            "esc_tile_overlap": "32",
            "esc_tensor_model": "esc-light_x4",
            "esc_tensor_input": "input",
            "esc_tensor_output": "output",
            "esc_tensor_max_batch": "4",
        }


def _warmups(config: Any) -> list[tuple[str, int, list[int]]]:
    """(name, batch, dims) of each zero-filled warm-up sample of the model's one input."""
    out = []
    for warmup in config.model_warmup:
        (sample,) = warmup.inputs.values()
        assert sample.zero_data and sample.data_type == 11  # TYPE_FP32
        out.append((warmup.name, warmup.batch_size, list(sample.dims)))
    return out


def test_engines_for_several_compute_capabilities(tmp_path: Path, engine: Path, onnx_model: Path) -> None:
    """Two real engines of one model, for 8.9 and for 12.0: both placed, cc_model_filenames picks per GPU."""
    other = build_engine_for(onnx_model, tmp_path / "sm120", compute_capabilities=("12.0",))
    repo = tmp_path / "repo"
    proc = _cli("--engine", str(engine), "--engine", str(other), "--onnx", str(onnx_model), "--output", str(repo))
    assert proc.returncode == 0, proc.stderr
    plan = parse_config((repo / "esc-light_x4" / "config.pbtxt").read_text())
    assert dict(plan.cc_model_filenames) == {"8.9": "model.plan", "12.0": "model_sm120.plan"}
    assert (repo / "esc-light_x4" / "1" / "model.plan").read_bytes() == engine.read_bytes()
    assert (repo / "esc-light_x4" / "1" / "model_sm120.plan").read_bytes() == other.read_bytes()
    proc = _cli("--engine", str(engine), "--engine", str(engine), "--output", str(tmp_path / "twice"))
    assert proc.returncode == 2 and "both run on compute capability 8.9" in proc.stderr
    narrow = build_engine_for(onnx_model, tmp_path / "narrow", profile="1x3x32x32 1x3x32x32 1x3x48x48",
                              compute_capabilities=("8.6",))  # fmt: skip
    proc = _cli("--engine", str(engine), "--engine", str(narrow), "--output", str(tmp_path / "unlike"))
    assert proc.returncode == 2 and "optimization profile" in proc.stderr
    assert not (tmp_path / "twice").exists() and not (tmp_path / "unlike").exists()


def test_onnx_alone_gives_a_cpu_repository(tmp_path: Path, onnx_model: Path) -> None:
    proc = _cli("--onnx", str(onnx_model), "--output", str(tmp_path / "repo"), "--ort-max-input", "128x192")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == [
        "docker_triton.sh",
        "esc-light_x4_image",
        "esc-light_x4_image_bytes",
        "esc-light_x4_onnx",
        "esc-light_x4_python",
        "launch_triton.sh",
    ]
    assert "serving/triton_server.py --repository" in proc.stdout
    config = parse_config((tmp_path / "repo" / "esc-light_x4_python" / "config.pbtxt").read_text())
    assert params_of(config)["esc_max_input_hw"] == "128,192" and params_of(config)["esc_scale"] == "4"
    image = params_of(parse_config((tmp_path / "repo" / "esc-light_x4_image" / "config.pbtxt").read_text()))
    assert image["esc_tensor_model"] == "esc-light_x4_python"  # no plan: the variant every Triton can load
    assert image["esc_max_input_hw"] == "128,192"


def test_image_model_options(tmp_path: Path, onnx_model: Path) -> None:
    proc = _cli("--onnx", str(onnx_model), "--output", str(tmp_path / "repo"), "--image-target", "onnx",
                "--image-max-pixels", "1000", "--image-overlap", "8")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    image = params_of(parse_config((tmp_path / "repo" / "esc-light_x4_image" / "config.pbtxt").read_text()))
    assert (image["esc_tensor_model"], image["esc_max_pixels"], image["esc_tile_overlap"]) == (
        "esc-light_x4_onnx", "1000", "8"
    )  # fmt: skip
    proc = _cli("--onnx", str(onnx_model), "--output", str(tmp_path / "bare"), "--no-image")
    assert proc.returncode == 0 and not list((tmp_path / "bare").glob("*_image*"))
    proc = _cli("--onnx", str(onnx_model), "--output", str(tmp_path / "bad"), "--image-target", "plan")
    assert proc.returncode == 2 and "the image models call the 'plan' variant, which is not written" in proc.stderr
    assert not (tmp_path / "bad").exists()


def test_variants_can_be_chosen(tmp_path: Path, engine: Path, onnx_model: Path) -> None:
    spec = spec_from_files(engine=engine, onnx=onnx_model, variants=("plan", "python"))
    assert make_repository(spec, tmp_path / "repo").models[:2] == ("esc-light_x4", "esc-light_x4_python")
    with pytest.raises(ValueError, match="variant 'plan' needs an engine"):
        spec_from_files(onnx=onnx_model, variants=("plan",))
    with pytest.raises(ValueError, match="nothing to serve"):
        spec_from_files()


def test_launch_commands(tmp_path: Path, engine: Path, plugin: Path) -> None:
    result = make_repository(spec_from_files(engine=engine, plugin=plugin), tmp_path / "repo")
    assert result.models == ("esc-light_x4", "esc-light_x4_image", "esc-light_x4_image_bytes")  # facts: the sidecar
    assert result.launch == [
        "tritonserver",
        f"--model-repository={tmp_path.resolve() / 'repo'}",
        f"--backend-config=tensorrt,plugins={plugin.resolve()}",
    ]
    assert "--backend-config=tensorrt,plugins=/plugins/libesc_trt_plugin.so" in result.docker
    assert f"{plugin.resolve().parent}:/plugins:ro" in result.docker
    # NVIDIA's container has no esc-deploy for the image models: it loads the tensor model alone
    assert "--model-control-mode=explicit" in result.docker and "--shm-size=2g" in result.docker
    assert [a for a in result.docker if a.startswith("--load-model=")] == ["--load-model=esc-light_x4"]
    script = (result.repo / "launch_triton.sh").read_text()
    runtime = EngineSidecar.read(engine).runtime_version
    assert script.startswith("#!/bin/sh\n") and f"tensorrt-rtx {runtime} for compute capabilities 8.9" in script
    assert f"--backend-config=tensorrt,plugins={plugin.resolve()}" in script
    assert (result.repo / "launch_triton.sh").stat().st_mode & 0o111


@pytest.mark.parametrize(
    ("profile", "max_batch", "expected"),
    [
        ("1x3x32x32 1x3x32x32 1x3x64x64", None, (1, [3, -1, -1])),
        ("1x3x32x32 2x3x32x32 8x3x64x64", 2, (2, [3, -1, -1])),
        ("2x3x32x32 4x3x32x32 4x3x64x64", None, (0, [-1, 3, -1, -1])),
        ("4x3x32x32 4x3x32x32 4x3x64x64", None, (0, [4, 3, -1, -1])),
    ],
)
def test_batch_layout(tmp_path: Path, onnx_model: Path, profile: str, max_batch: int | None, expected: tuple) -> None:
    spec = spec_from_files(engine=build_engine_for(onnx_model, tmp_path, profile=profile), max_batch=max_batch)
    assert spec.batch_layout("plan") == expected
    config = parse_config(config_text(model_config(spec, "plan")))
    assert config.max_batch_size == expected[0] and list(config.input[0].dims) == expected[1]
    assert config.HasField("dynamic_batching") == (expected[0] > 1)


@pytest.mark.parametrize(
    ("profile", "max_batch", "message"),
    [
        ("1x3x32x32 1x3x32x32 2x3x32x32", 4, "exceeds"),
        ("2x3x32x32 2x3x32x32 2x3x32x32", 2, "cannot batch"),
    ],
)
def test_bad_batch(tmp_path: Path, onnx_model: Path, profile: str, max_batch: int, message: str) -> None:
    engine = build_engine_for(onnx_model, tmp_path, profile=profile)
    with pytest.raises(ValueError, match=message):
        spec_from_files(engine=engine, max_batch=max_batch)


def test_facts_come_from_earlier_stages_or_nowhere(tmp_path: Path, engine: Path, onnx_model: Path) -> None:
    bare = tmp_path / "bare.plan"
    bare.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"no sidecar .*bare\.plan\.json"):
        spec_from_files(engine=bare)
    no_metadata = write_stand_in_onnx(tmp_path / "foreign.onnx", metadata=False)
    with pytest.raises(ValueError, match=r"no 'esc\.config' metadata"):
        spec_from_files(onnx=no_metadata)
    other = write_stand_in_onnx(tmp_path / "x2.onnx", scale=2)
    with pytest.raises(ValueError, match="another model"):
        spec_from_files(engine=engine, onnx=other)


def test_failure_leaves_nothing(tmp_path: Path, engine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise OSError("disk full")

    before = sorted(p.name for p in tmp_path.iterdir())
    monkeypatch.setattr(triton_repo.shutil, "copyfile", broken)
    with pytest.raises(OSError, match="disk full"):
        make_repository(spec_from_files(engine=engine), tmp_path / "repo")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_overwrite(tmp_path: Path, engine: Path) -> None:
    out = tmp_path / "repo"
    make_repository(spec_from_files(engine=engine), out)
    with pytest.raises(ValueError, match="already exists"):
        make_repository(spec_from_files(engine=engine), out)
    make_repository(spec_from_files(engine=engine, name="renamed"), out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "docker_triton.sh",
        "launch_triton.sh",
        "renamed",
        "renamed_image",
        "renamed_image_bytes",
    ]
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
        (["--engine", "{engine}", "--onnx", "{engine}"], "not a readable ONNX"),
        (["--engine", "{engine}", "--max-batch", "9"], "exceeds"),
        (["--engine", "{engine}", "--name", "bad name"], "model name"),
        (["--onnx", "{onnx}", "--ort-max-input", "8x8"], "below the model's minimum side 17"),
        (["--onnx", "{onnx}", "--variants", "plan"], "needs an engine"),
        (["--onnx", "{onnx}", "--variants", "tensorflow"], "subset of plan,onnx,python"),
        ([], "nothing to serve"),
    ],
)
def test_cli_errors(tmp_path: Path, engine: Path, onnx_model: Path, args: list[str], message: str) -> None:
    out = tmp_path / "repo"
    args = [a.format(tmp=tmp_path, engine=engine, onnx=onnx_model) for a in args]
    proc = _cli(*args, "--output", str(out))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
