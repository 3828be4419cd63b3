"""The Triton client against a real Triton Inference Server (PyTriton's tritonserver 2.51, Python backend).

Nothing is mocked: the repository is written by serving/model_repository/writer.py from a real ESC-light x4 export,
the server is started by serving/triton_server.py, and results are compared with ONNX Runtime run
in this process on the same file.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from esc_deploy.runtime.images import read_image, to_uint8
from esc_deploy.runtime.tiles import plan_tiles, upscale_array
from esc_deploy.runtime.triton import TritonError, TritonRunner, connect
from esc_deploy.serving.local_server import LocalTriton, group_alive
from tests.serving.fixtures import MAX_BATCH, MAX_TILE, SERVED_CHECKPOINT, Served

pytestmark = pytest.mark.xdist_group(SERVED_CHECKPOINT)  # one export and one server per worker

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENT = REPO_ROOT / "serving" / "triton_client.py"
PROTOCOLS = ["http", "grpc"]
# PSNR of the client's tiled result against untiled inference on the 64x96 photograph (tile 48,
# overlap 16, window-aligned starts), in 8-bit: measured 38.1 dB, documented in docs/serving.md.
SEAM_PSNR_DB = 37.0


@pytest.fixture(scope="module")
def ort(served: Served) -> Callable[[np.ndarray], np.ndarray]:
    """The served ONNX file in this process: [n, 3, h, w] -> [n, 3, 4h, 4w]."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(served.onnx), providers=["CPUExecutionProvider"])
    return lambda batch: session.run(["output"], {"input": np.ascontiguousarray(batch)})[0]


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real photograph (skimage's astronaut), 64x96: larger than the served model's 48x48 maximum."""
    from skimage import data

    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(data.astronaut()).resize((96, 64), Image.Resampling.LANCZOS).save(path)
    return path


def _client(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(CLIENT), "--no-progress", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


def _one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _assert_ready(served: Served) -> None:
    import tritonclient.http as http

    client = http.InferenceServerClient(served.server.http_url)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(served.model)
    client.close()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tiled_photograph_equals_tiled_onnx_runtime(
    served: Served, ort: Callable[[np.ndarray], np.ndarray], photo: Path, tmp_path: Path, protocol: str
) -> None:
    out = tmp_path / "x4.png"
    proc = _client("--url", served.url(protocol), "--protocol", protocol, "--model", served.model,
                   "--overlap", "16", str(photo), str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as img:
        served_u8 = np.asarray(img.convert("RGB"))
    assert served_u8.shape == (256, 384, 3)

    image = read_image(photo).colour
    with connect(served.url(protocol), served.model, protocol) as runner:  # type: ignore[arg-type]
        info = runner.facts
    assert (info.scale, info.window, info.max_hw, info.min_hw) == (4, 32, (MAX_TILE, MAX_TILE), (17, 17))
    plan = plan_tiles(info, (64, 96), overlap=16, concurrency=4)
    assert plan.tile == (MAX_TILE, MAX_TILE) and plan.align == 32
    tiled = _hwc_uint8(upscale_array(image, ort, scale=4, plan=plan, min_hw=info.min_hw))
    np.testing.assert_array_equal(served_u8, tiled)  # 0 difference in 8-bit
    untiled = _hwc_uint8(ort(image))
    assert _psnr(served_u8, untiled) >= SEAM_PSNR_DB


def test_concurrent_requests_are_batched(served: Served, ort: Callable[[np.ndarray], np.ndarray]) -> None:
    upscaler = connect(served.server.http_url, served.model, "http")
    before = upscaler.statistics()
    rng = np.random.default_rng(0)
    inputs = [rng.random((1, 3, 32, 40), dtype=np.float32) for _ in range(MAX_BATCH)]
    results: list[np.ndarray | None] = [None] * len(inputs)
    barrier = threading.Barrier(len(inputs))

    def send(i: int) -> None:
        barrier.wait()
        results[i] = upscaler(inputs[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = upscaler.statistics()
    requests = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert requests == len(inputs) and executions < requests, (requests, executions)
    for x, y in zip(inputs, results, strict=True):
        assert y is not None
        np.testing.assert_array_equal(y, ort(x))  # exact in float32


def test_small_image_is_padded_by_the_client_and_refused_raw(
    served: Served, ort: Callable[[np.ndarray], np.ndarray], tmp_path: Path
) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (9, 12, 3), dtype=np.uint8)  # below the 17x17 minimum
    Image.fromarray(pixels).save(tmp_path / "small.png")
    proc = _client("--url", served.server.http_url, "--model", served.model,
                   str(tmp_path / "small.png"), str(tmp_path / "out.png"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    image = read_image(tmp_path / "small.png").colour
    padded = np.pad(image, ((0, 0), (0, 0), (0, 17 - 9), (0, 17 - 12)), mode="reflect")
    expected = _hwc_uint8(ort(padded)[:, :, :36, :48])
    with Image.open(tmp_path / "out.png") as img:
        np.testing.assert_array_equal(np.asarray(img), expected)

    upscaler = connect(served.server.grpc_url, served.model, "grpc")
    with pytest.raises(TritonError, match=r"below the minimum 17x17") as raised:
        upscaler.infer(image)
    _assert_one_line_naming_model(raised.value, served.model)
    _assert_ready(served)


def _hwc_uint8(image: np.ndarray) -> np.ndarray:
    """[1, 3, H, W] in [0, 1] -> the [H, W, 3] 8-bit pixels a PNG holds."""
    return to_uint8(image[0].transpose(1, 2, 0))


def _assert_one_line_naming_model(exc: BaseException, model: str) -> None:
    text = str(exc)
    assert "\n" not in text and f"'{model}'" in text, text


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda rng: rng.random((1, 3, 24, 24)).astype(np.float16), "FP16"),  # wrong dtype
        (lambda rng: rng.random((1, 4, 24, 24), dtype=np.float32), "4"),  # RGBA: 4 channels
        (lambda rng: rng.random((MAX_BATCH + 1, 3, 24, 24), dtype=np.float32), "batch"),
        (lambda rng: rng.random((1, 3, MAX_TILE + 8, 24), dtype=np.float32), "above the maximum"),
    ],
    ids=["fp16", "4-channels", "batch-above-max", "above-max-side"],
)
def test_bad_requests_are_one_line_and_leave_the_server_ready(
    served: Served, protocol: str, make: Callable[[np.random.Generator], np.ndarray], message: str
) -> None:
    upscaler: TritonRunner = connect(served.url(protocol), served.model, protocol)  # type: ignore[arg-type]
    with pytest.raises(TritonError) as raised:
        upscaler.infer(make(np.random.default_rng(2)))
    _assert_one_line_naming_model(raised.value, served.model)
    assert message.lower() in str(raised.value).lower()
    _assert_ready(served)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cli_unknown_model_is_one_line(served: Served, photo: Path, tmp_path: Path, protocol: str) -> None:
    proc = _client("--url", served.url(protocol), "--protocol", protocol, "--model", "no-such-model",
                   str(photo), str(tmp_path / "out.png"))  # fmt: skip
    _one_line_error(proc, "'no-such-model'", "not ready")
    assert not (tmp_path / "out.png").exists()
    _assert_ready(served)


def test_generated_configs_are_parsed_by_the_server(served: Served) -> None:
    """Explicit load of the tensorrt_plan and onnxruntime_onnx variants: the config is accepted and only
    the backend (not bundled with PyTriton) is missing. On a server of its own: a failed load leaves
    the model UNAVAILABLE, and a server with an unavailable model is not ready (strict readiness)."""
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    with LocalTriton(served.server.repository, install=served.server.install) as server:
        client = http.InferenceServerClient(server.http_url)
        for variant, backend in (("plan", "tensorrt"), ("onnx", "onnxruntime")):
            assert variant in served.spec.selected
            name = served.spec.model_name(variant)
            with pytest.raises(InferenceServerException) as raised:
                client.load_model(name)
            text = str(raised.value)
            assert f"load failed for model '{name}'" in text, text
            assert f"unable to find backend library for backend '{backend}'" in text, text
        client.close()


def test_stop_leaves_no_process_and_no_shared_memory(served: Served) -> None:
    """A second server on the same repository: loaded, used, stopped by pid with nothing left."""
    with LocalTriton(served.server.repository, models=[served.model], install=served.server.install) as server:
        assert server.http_url.startswith("127.0.0.1:") and server.http_port != served.server.http_port
        upscaler = connect(server.http_url, served.model, "http")
        upscaler(np.zeros((1, 3, 20, 20), dtype=np.float32))
        upscaler.close()  # an open connection would hold the shutdown for --exit-timeout-secs
        pid, prefix = server.pid, server.shm_prefix
        assert pid is not None and list(Path("/dev/shm").glob(f"{prefix}*"))  # the Python backend's regions
        report = server.stop()
    assert not report.killed and report.stray_shm == ()
    assert not group_alive(pid) and not list(Path("/dev/shm").glob(f"{prefix}*"))
    _assert_ready(served)


def test_server_cli_detached_as_in_the_readme(served: Served, photo: Path, tmp_path: Path) -> None:
    """`pid=$(python serving/triton_server.py --repository R --detach)`, the client, `kill $pid`."""
    import os
    import signal
    import time

    from esc_deploy.serving.local_server import free_ports

    http_port, grpc_port = free_ports(2)
    shm_before = set(Path("/dev/shm").glob("esc_triton_*"))
    script = REPO_ROOT / "serving" / "triton_server.py"
    cmd = [sys.executable, str(script), "--repository", str(served.server.repository),
           "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--detach"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    pid = int(proc.stdout.strip())
    try:
        assert f"kill {pid}" in proc.stderr
        small = tmp_path / "small.png"
        Image.open(photo).crop((0, 0, 24, 20)).save(small)
        out = _client("--url", f"127.0.0.1:{http_port}", "--model", served.model, str(small), str(tmp_path / "o.png"))
        assert out.returncode == 0, out.stderr
    finally:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while group_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not group_alive(pid)
    assert set(Path("/dev/shm").glob("esc_triton_*")) <= shm_before  # it removed its own regions
