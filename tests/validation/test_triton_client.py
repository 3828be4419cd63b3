"""validation/triton_client.py without a server: arguments, image I/O, model limits, the tiling driver.

No Triton server is faked: the driver is run with a local upscaler (nearest neighbour), and the only
network test points the CLI at a port where nothing listens.
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

from export.triton_repo import Profile, RepoSpec, model_config
from validation import triton_client
from validation.triton_io import (
    ModelInfo,
    parse_model_info,
    plan_tiles,
    read_image,
    to_uint8,
    upscale_image,
    write_image,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "validation" / "triton_client.py"


def _info(**overrides: object) -> ModelInfo:
    fields: dict = dict(name="m", input_name="input", output_name="output", max_batch_size=4,
                        max_hw=(64, 64), scale=2, window_size=16)  # fmt: skip
    fields.update(overrides)
    return ModelInfo(**fields)


def _nearest(scale: int):
    return lambda x: x.repeat(scale, axis=2).repeat(scale, axis=3)


def test_args() -> None:
    args = triton_client.parse_args(["--url", "h:8001", "--model", "m", "--protocol", "grpc", "a.png", "b.png"])
    assert (args.url, args.model, args.protocol, args.overlap) == ("h:8001", "m", "grpc", 32)
    assert args.input == Path("a.png") and args.max_tile is None
    with pytest.raises(SystemExit):
        triton_client.parse_args(["--url", "h:1", "--model", "m", "--protocol", "ftp", "a.png", "b.png"])


def test_png_round_trip(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (13, 17, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    image = read_image(tmp_path / "in.png")
    assert image.shape == (1, 3, 13, 17) and image.dtype == np.float32
    assert image.min() >= 0 and image.max() <= 1
    write_image(tmp_path / "out.png", image)
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(out), pixels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "out.png"]


def test_read_converts_grey_and_alpha(tmp_path: Path) -> None:
    Image.new("L", (5, 4), 128).save(tmp_path / "grey.png")
    Image.new("RGBA", (5, 4), (255, 0, 0, 10)).save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "grey.png").shape == (1, 3, 4, 5)
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png")[0, :, 0, 0], [1, 0, 0])
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image"):
        read_image(tmp_path / "bad.png")


def test_to_uint8_clips_and_rounds() -> None:
    image = np.array([-0.5, 0.0, 0.5 / 255, 1.4 / 255, 1.0, 2.0], dtype=np.float32).reshape(1, 1, 1, 6)
    out = to_uint8(np.repeat(image, 3, axis=1))
    assert out.shape == (1, 6, 3)
    assert out[0, :, 0].tolist() == [0, 0, 0, 1, 255, 255]  # 0.5 rounds to even


def test_model_info_from_generated_config() -> None:
    """The client reads what export/triton_repo.py writes (via the protobuf JSON the server serves)."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    profile = Profile.from_dict({"min": [1, 3, 16, 16], "opt": [1, 3, 64, 64], "max": [2, 3, 96, 128]}, "t")
    spec = RepoSpec(name="esc", engine=Path("e.plan"), profile=profile, scale=4, window_size=32)
    message = text_format.Parse(model_config(spec, onnx=False), model_config_pb2.ModelConfig())
    config = json.loads(json_format.MessageToJson(message, preserving_proto_field_name=True))
    info = parse_model_info(config)
    assert info == ModelInfo(name="esc", input_name="input", output_name="output", max_batch_size=2,
                             max_hw=(96, 128), scale=4, window_size=32)  # fmt: skip
    with pytest.raises(ValueError, match="one input and one output"):
        parse_model_info({"name": "x", "input": []})


def test_plan_tiles() -> None:
    assert plan_tiles(_info(), (200, 300)).tile == (64, 64)
    assert plan_tiles(_info(), (200, 300)).align == 16 and plan_tiles(_info(), (200, 300)).tiles_per_call == 4
    assert plan_tiles(_info(), (200, 300), max_tile=48, align=1).tile == (48, 48)
    assert plan_tiles(_info(max_hw=None), (30, 40)).tile == (30, 40)  # no limits known: one call
    assert plan_tiles(_info(), (200, 300), max_tile=40, overlap=32).align == 1  # 40 - 32 < 16
    with pytest.raises(ValueError, match="exceeds"):
        plan_tiles(_info(), (200, 300), max_tile=65)


@pytest.mark.parametrize("max_batch", [0, 1, 3])
def test_driver_with_local_upscaler(max_batch: int) -> None:
    image = np.random.default_rng(1).random((1, 3, 150, 101), dtype=np.float32)
    calls: list[tuple[int, ...]] = []

    def upscale(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.shape)
        assert batch.shape[2] <= 64 and batch.shape[3] <= 64
        return _nearest(2)(batch)

    plan = plan_tiles(_info(max_batch_size=max_batch), (150, 101), overlap=16)
    out = upscale_image(image, upscale, scale=2, plan=plan)
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
    assert not (tmp_path / "out.png").exists()
