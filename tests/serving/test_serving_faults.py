"""Faults against the real tritonserver 2.51 and its image models: each bad request gets a clear one-line
error, and the server stays ready and exact afterwards; a server killed under load leaves the client with
one line per failed image and no output for it.

(A 4-channel image to the models that keep alpha: tests/serving/test_image_model.py, RGBA cases.)
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from esc_deploy.serving.local_server import LocalTriton, group_alive
from tests.serving.fixtures import IMAGE_MAX_PIXELS, SERVED_CHECKPOINT, Served
from tests.serving.test_image_model import esc_deploy_upscale, infer_image

pytestmark = pytest.mark.xdist_group(SERVED_CHECKPOINT)

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENT = REPO_ROOT / "serving" / "triton_client.py"
PROTOCOLS = ["http", "grpc"]


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """skimage's astronaut at 64x96 (six tiles of the 48x48 tensor model)."""
    from skimage import data

    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(data.astronaut()).resize((96, 64), Image.Resampling.LANCZOS).save(path)
    return path


def assert_ready_and_exact(served: Served, photo: Path, protocol: str = "http") -> None:
    """The server is ready and still gives esc-deploy upscale's result for the photograph."""
    import tritonclient.http as http

    client = http.InferenceServerClient(served.server.http_url)
    assert client.is_server_ready() and client.is_model_ready(served.image_model)
    client.close()
    result = infer_image(served, protocol, served.image_model, np.asarray(Image.open(photo)))
    np.testing.assert_array_equal(result, esc_deploy_upscale(served, photo))


def refused(served: Served, protocol: str, model: str, data: np.ndarray) -> str:
    """The error of a request that must fail: one line, naming the model."""
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as raised:
        infer_image(served, protocol, model, data)
    text = str(raised.value)
    assert "\n" not in text.strip() and "Traceback" not in text and model in text, text
    return text


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_above_the_pixel_limit(served: Served, photo: Path, protocol: str) -> None:
    big = np.zeros((128, 128, 3), np.uint8)  # 16384 pixels, the served limit is 12288
    assert "128x128 has 16384 pixels, above the limit of 12288" in refused(served, protocol, served.image_model, big)
    png = io.BytesIO()
    Image.fromarray(big).save(png, format="PNG")
    data = np.frombuffer(png.getvalue(), np.uint8)
    assert f"above the limit of {IMAGE_MAX_PIXELS}" in refused(served, protocol, served.bytes_model, data)
    assert_ready_and_exact(served, photo, protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_truncated_png(served: Served, photo: Path, protocol: str) -> None:
    data = np.frombuffer(photo.read_bytes(), np.uint8)
    text = refused(served, protocol, served.bytes_model, data[: len(data) // 2])
    assert "cannot decode the image file" in text, text
    assert_ready_and_exact(served, photo, protocol)


# Bad requests of every kind the image models can meet; each is refused before any tile is computed.
BAD: list[tuple[str, str, Callable[[np.random.Generator], np.ndarray], str]] = [
    ("image", "5-channels", lambda rng: rng.integers(0, 255, (20, 20, 5), dtype=np.uint8), "1 to 4 channels"),
    ("image", "rank-2", lambda rng: rng.integers(0, 255, (20, 20), dtype=np.uint8), "unexpected shape"),
    ("image", "empty", lambda rng: np.zeros((0, 20, 3), np.uint8), "empty image"),
    ("image", "too-big", lambda rng: np.zeros((200, 100, 1), np.uint8), "above the limit"),
    ("bytes", "not-an-image", lambda rng: rng.integers(0, 255, 300, dtype=np.uint8), "cannot decode"),
    ("bytes", "empty-file", lambda rng: np.zeros(0, np.uint8), "cannot decode"),
]


def test_100_bad_requests_in_a_row(served: Served, photo: Path) -> None:
    rng = np.random.default_rng(5)
    for i in range(100):
        which, label, make, message = BAD[i % len(BAD)]
        model = served.image_model if which == "image" else served.bytes_model
        text = refused(served, PROTOCOLS[i % 2], model, make(rng))
        assert message in text, (label, text)
    assert_ready_and_exact(served, photo, "grpc")
    assert "Traceback" not in served.server.log_path.read_text()


def _request_bytes(served: Served, photo: Path) -> bytes:
    """A complete HTTP/1.1 infer request (KServe v2 binary extension) for the bytes model."""
    import json

    data = photo.read_bytes()
    header = json.dumps({
        "inputs": [{"name": "IMAGE", "shape": [len(data)], "datatype": "UINT8",
                    "parameters": {"binary_data_size": len(data)}}],
        "outputs": [{"name": "IMAGE", "parameters": {"binary_data": True}}],
    }).encode()  # fmt: skip
    body = header + data
    head = (
        f"POST /v2/models/{served.bytes_model}/infer HTTP/1.1\r\nHost: {served.server.http_url}\r\n"
        f"Inference-Header-Content-Length: {len(header)}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@pytest.mark.parametrize("when", ["mid-upload", "awaiting-answer"])
def test_client_disconnect_mid_request(served: Served, photo: Path, when: str) -> None:
    """A client that goes away half-way through sending, or before the answer comes."""
    request = _request_bytes(served, photo)
    host, port = served.server.http_url.split(":")
    for _ in range(3 if when == "mid-upload" else 1):  # an abandoned full request still costs its inference
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(request[: len(request) // 2] if when == "mid-upload" else request)
            sock.shutdown(socket.SHUT_RDWR)
    assert_ready_and_exact(served, photo)


def test_server_killed_during_load(served: Served, photo: Path, tmp_path: Path) -> None:
    """Four client commands on a server of their own; the server is killed (SIGKILL) while they wait:
    each failed one says so in one line and exits 2, and writes nothing."""
    import tritonclient.http as http

    models = [served.model, served.bytes_model]
    server = LocalTriton(served.server.repository, models=models, install=served.server.install).start()
    pid = server.pid
    assert pid is not None
    procs: list[tuple[subprocess.Popen[str], Path]] = []
    try:
        for i in range(4):
            target = tmp_path / f"out{i}.png"
            cmd = [sys.executable, str(CLIENT), "--url", server.http_url, "--model", served.bytes_model,
                   str(photo), str(target)]  # fmt: skip
            procs.append((subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), target))
        client = http.InferenceServerClient(server.http_url)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until tiles reach the tensor model: requests are in flight
            (stats,) = client.get_inference_statistics(served.model)["model_stats"]
            if int(stats["inference_count"]) > 0:
                break
            time.sleep(0.02)
        client.close()
        os.killpg(pid, signal.SIGKILL)  # the server and its stubs, as an OOM kill or a crash would
        results = [(proc.communicate(timeout=120), proc.returncode, target) for proc, target in procs]
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
        report = server.stop()
    failed = [(err, target) for (_, err), code, target in results if code != 0]
    assert failed, "the kill came after every image was done: nothing was shown"
    for (out, err), code, target in results:
        if code == 0:
            assert target.is_file() and "tiled by" in out
            continue
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
        assert served.bytes_model in lines[0], lines[0]
        assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    assert not group_alive(pid) and report.killed is False  # stop() found the group gone, killed nothing
    assert not list(Path("/dev/shm").glob(f"{server.shm_prefix}*"))
