"""serving/triton_client.py without a server: arguments, image I/O, model limits, the tiling driver.

No Triton server is faked: the driver is run with a local upscaler (nearest neighbour), and the only
network test points the CLI at a port where nothing listens. The real server: test_local_server.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from esc_deploy.runtime.facts import ModelFacts
from esc_deploy.runtime.images import to_uint8
from esc_deploy.runtime.tiles import padded, plan_tiles, upscale_array
from esc_deploy.runtime.triton import TritonRunner
from esc_deploy.serving.client import cli as triton_client
from esc_deploy.serving.model_repository.writer import model_config, spec_from_files
from tests.export.trt.sidecars import build_engine_for, write_stand_in_onnx

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "serving" / "triton_client.py"


def _info(**overrides: object) -> ModelFacts:
    fields: dict = dict(max_batch=4, max_hw=(64, 64), min_hw=(9, 9), scale=2, window=16, source="model 'm'")
    fields.update(overrides)
    return ModelFacts(**fields)


def _nearest(scale: int):
    return lambda x: x.repeat(scale, axis=2).repeat(scale, axis=3)


def test_args() -> None:
    args = triton_client.parse_args(["--url", "h:8001", "--model", "m", "--protocol", "grpc", "a.png", "b.png"])
    assert (args.url, args.model, args.protocol, args.overlap) == ("h:8001", "m", "grpc", 32)
    assert args.input == Path("a.png") and args.max_tile is None
    with pytest.raises(SystemExit):
        triton_client.parse_args(["--url", "h:1", "--model", "m", "--protocol", "ftp", "a.png", "b.png"])


def test_to_uint8_clips_and_rounds() -> None:
    plane = np.array([-0.5, 0.0, 0.5 / 255, 1.4 / 255, 1.0, 2.0], dtype=np.float32)
    assert to_uint8(plane).tolist() == [0, 0, 0, 1, 255, 255]  # 0.5 rounds to even


def test_model_info_from_generated_config(tmp_path: Path) -> None:
    """The client reads what serving/model_repository/writer.py writes (via the protobuf JSON the server serves)."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    onnx = write_stand_in_onnx(tmp_path / "esc.onnx")
    engine = build_engine_for(onnx, tmp_path, profile="1x3x32x32 1x3x64x64 2x3x96x128")
    spec = spec_from_files(engine=engine, onnx=onnx, ort_max_input=(48, 64))
    infos = {}
    for variant in spec.selected:
        message = text_format.Parse(model_config(spec, variant), model_config_pb2.ModelConfig())
        config = json.loads(json_format.MessageToJson(message, preserving_proto_field_name=True))
        runner = TritonRunner("127.0.0.1:1", None, config, "http", 1.0)  # connects only when it runs
        assert (runner.name, runner.input_name, runner.output_name) == (spec.model_name(variant), "input", "output")
        infos[variant] = runner.facts
    assert infos["plan"] == ModelFacts(max_batch=2, max_hw=(96, 128), min_hw=(32, 32), scale=4, window=32,
                                       family="esc", source="Triton model 'esc-light_x4'")  # fmt: skip
    assert infos["python"] == ModelFacts(max_batch=2, max_hw=(48, 64), min_hw=(17, 17), scale=4, window=32,
                                         family="esc", source="Triton model 'esc-light_x4_python'")  # fmt: skip
    with pytest.raises(ValueError, match="one input and one output"):
        TritonRunner("127.0.0.1:1", None, {"name": "x", "input": []}, "http", 1.0)
    bare = {"name": "x", "input": [{"name": "i"}], "output": [{"name": "o"}]}
    with pytest.raises(ValueError, match=r"model 'x' does not record esc_scale, esc_window_size, esc_min_input_hw"):
        TritonRunner("127.0.0.1:1", None, bare, "http", 1.0)


def test_plan_tiles() -> None:
    assert plan_tiles(_info(), (200, 300)).tile == (64, 64)
    assert plan_tiles(_info(), (200, 300)).align == 16 and plan_tiles(_info(), (200, 300)).tiles_per_call == 4
    assert plan_tiles(_info(), (200, 300), max_tile=48, align=1).tile == (48, 48)
    assert plan_tiles(_info(max_hw=None), (30, 40)).tile == (30, 40)  # no limits known: one call
    assert plan_tiles(_info(), (200, 300), max_tile=40, overlap=32).align == 1  # 40 - 32 < 16
    # concurrent requests share the batch, so that dynamic batching can fill it
    assert plan_tiles(_info(), (200, 300), concurrency=4).tiles_per_call == 1
    assert plan_tiles(_info(), (200, 300), concurrency=2).tiles_per_call == 2
    with pytest.raises(ValueError, match="exceeds"):
        plan_tiles(_info(), (200, 300), max_tile=65)
    with pytest.raises(ValueError, match=r"below the model's minimum side 9 \(model 'm'\)"):
        plan_tiles(_info(), (200, 300), max_tile=8)


@pytest.mark.parametrize("max_batch", [0, 1, 3])
def test_driver_with_local_upscaler(max_batch: int) -> None:
    image = np.random.default_rng(1).random((1, 3, 150, 101), dtype=np.float32)
    calls: list[tuple[int, ...]] = []

    def upscale(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.shape)
        assert batch.shape[2] <= 64 and batch.shape[3] <= 64
        return _nearest(2)(batch)

    plan = plan_tiles(_info(max_batch=max_batch), (150, 101), overlap=16)
    out = upscale_array(image, upscale, scale=2, plan=plan)
    np.testing.assert_allclose(out, _nearest(2)(image), rtol=0, atol=1e-6)
    assert max(shape[0] for shape in calls) <= max(max_batch, 1) and len(calls) > 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_unreachable_server_is_one_line(tmp_path: Path, protocol: str) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "in.png")
    url = f"127.0.0.1:{_free_port()}"
    cmd = [sys.executable, str(SCRIPT), "--url", url, "--model", "m", "--protocol", protocol]
    proc = subprocess.run([*cmd, str(tmp_path / "in.png"), str(tmp_path / "out.png")],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot talk to Triton" in lines[0] and "Traceback" not in proc.stderr
    assert "model 'm'" in lines[0]
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(("h", "w"), [(1, 1), (5, 30), (30, 8), (9, 9)])
def test_padding_below_the_minimum(h: int, w: int) -> None:
    seen: list[tuple[int, ...]] = []

    def upscale(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.shape)
        return _nearest(2)(batch)

    image = np.random.default_rng(4).random((1, 3, h, w), dtype=np.float32)
    out = padded(upscale, (9, 9), 2)(image)
    np.testing.assert_array_equal(out, _nearest(2)(image))  # local upscaler: the crop is exact
    assert seen == [(1, 3, max(h, 9), max(w, 9))]


def test_driver_pads_small_last_tiles() -> None:
    """A last tile cut at the image end below the minimum is padded, not sent short."""
    image = np.random.default_rng(5).random((1, 3, 75, 40), dtype=np.float32)
    shapes: list[tuple[int, ...]] = []

    def upscale(batch: np.ndarray) -> np.ndarray:
        shapes.append(batch.shape)
        assert min(batch.shape[2:]) >= 20
        return _nearest(2)(batch)

    plan = plan_tiles(_info(max_hw=(40, 40), min_hw=(20, 20)), (75, 40), overlap=0, align=32)  # rows 0, 32, 64
    out = upscale_array(image, upscale, scale=2, plan=plan, min_hw=(20, 20))
    np.testing.assert_allclose(out, _nearest(2)(image), rtol=0, atol=1e-6)
    assert any(s[2] == 20 for s in shapes)  # the 11-row last tile went out padded to 20


def test_client_imports_no_torch() -> None:
    code = "import sys; import esc_deploy.serving.client.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO_ROOT).returncode == 0


def test_server_finder_and_python_models(tmp_path: Path) -> None:
    from esc_deploy.serving.local_server import INSTALL_HINT, TritonServerError, find_pytriton, python_models

    (tmp_path / "pytriton").mkdir()  # present but incomplete: the message says what is missing
    with pytest.raises(TritonServerError, match=r"tritonserver is missing.*pip install --no-deps --target") as raised:
        find_pytriton([tmp_path, tmp_path / "nowhere"])
    assert INSTALL_HINT in str(raised.value) and "\n" not in str(raised.value)
    # A repository as make_triton_repo writes it (an ONNX Runtime and a Python-backend model of one ONNX).
    from esc_deploy.serving.model_repository.writer import make_repository, spec_from_files
    from tests.export.trt.sidecars import write_stand_in_onnx

    onnx = write_stand_in_onnx(tmp_path / "esc-light_x4.onnx")
    result = make_repository(spec_from_files(onnx=onnx, variants=("onnx", "python")), tmp_path / "repo")
    assert result.models == ("esc-light_x4_onnx", "esc-light_x4_python")
    assert python_models(result.repo) == ["esc-light_x4_python"]
