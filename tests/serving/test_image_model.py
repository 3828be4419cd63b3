"""The image models against the real tritonserver 2.51: send a picture, get the picture upscaled.

`<name>_image` takes UINT8 pixels [H, W, C] and `<name>_image_bytes` a file's bytes; both tile on the
window grid and send the tiles by BLS to the repository's Python tensor model (ONNX Runtime on the CPU).
Their results are compared with `esc-deploy upscale --backend onnxruntime` on the same file, with the
same tile plan (tile 48 = the tensor model's largest input, overlap 16): identical in 8 bits, alpha and
gray included.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.serving.fixtures import IMAGE_OVERLAP, MAX_TILE, SERVED_CHECKPOINT, Served

pytestmark = pytest.mark.xdist_group(SERVED_CHECKPOINT)

PROTOCOLS = ["http", "grpc"]


def _module(protocol: str):  # -> tritonclient.http or tritonclient.grpc
    if protocol == "http":
        import tritonclient.http as module
    else:
        import tritonclient.grpc as module
    return module


def infer_image(served: Served, protocol: str, model: str, data: np.ndarray) -> np.ndarray:
    """One request with tritonclient alone, as a user without this project would send it."""
    module = _module(protocol)
    client = module.InferenceServerClient(served.url(protocol))
    try:
        inp = module.InferInput("IMAGE", list(data.shape), "UINT8")
        inp.set_data_from_numpy(data)
        return np.asarray(client.infer(model, [inp]).as_numpy("IMAGE"))
    finally:
        client.close()


_UPSCALED: dict[Path, np.ndarray] = {}


def esc_deploy_upscale(served: Served, source: Path) -> np.ndarray:
    """`esc-deploy upscale` with ONNX Runtime on the CPU and the image model's tile plan (once per file),
    as [H, W, C] (C = 1 for gray). The command's own main, in this process (no interpreter start-up)."""
    from esc_deploy.cli import main

    if source not in _UPSCALED:
        target = source.with_name(source.stem + "_esc_deploy_x4.png")
        args = ["upscale", str(source), str(target), "--backend", "onnxruntime", "--onnx", str(served.onnx),
                "--tile", str(MAX_TILE), "--overlap", str(IMAGE_OVERLAP), "--no-progress"]  # fmt: skip
        assert main(args) == 0
        with Image.open(target) as img:
            pixels = np.asarray(img)
        _UPSCALED[source] = pixels[:, :, None] if pixels.ndim == 2 else pixels
    return _UPSCALED[source]


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real photograph (skimage's astronaut) at 64x96: six tiles of the 48x48 tensor model."""
    from skimage import data

    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(data.astronaut()).resize((96, 64), Image.Resampling.LANCZOS).save(path)
    return path


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_photograph_equals_esc_deploy_upscale(served: Served, photo: Path, protocol: str) -> None:
    expected = esc_deploy_upscale(served, photo)
    pixels = np.asarray(Image.open(photo))
    result = infer_image(served, protocol, served.image_model, pixels)
    assert result.shape == (256, 384, 3) and result.dtype == np.uint8
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("channels", [1, 2, 4], ids=["gray", "gray-alpha", "rgba"])
def test_gray_and_alpha_as_esc_deploy_upscale(served: Served, photo: Path, tmp_path: Path, channels: int) -> None:
    """A gray photograph, and with a real alpha (its own inverted luminance, a soft mask): the pixel model
    and the bytes model give what `esc-deploy upscale` gives for the same file (alpha and gray kept)."""
    with Image.open(photo) as img:
        rgb = img.crop((0, 0, 60, 40))
        gray = np.asarray(rgb.convert("L"))
    planes = {1: [gray], 2: [gray, 255 - gray], 4: [*np.asarray(rgb).transpose(2, 0, 1), 255 - gray]}[channels]
    pixels = np.dstack(planes)
    source = tmp_path / "in.png"
    Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels).save(source)
    expected = esc_deploy_upscale(served, source)
    assert expected.shape == (160, 240, channels)
    np.testing.assert_array_equal(infer_image(served, "http", served.image_model, pixels), expected)
    png = infer_image(served, "grpc", served.bytes_model, np.frombuffer(source.read_bytes(), dtype=np.uint8))
    with Image.open(io.BytesIO(png.tobytes())) as img:
        assert img.mode == {1: "L", 2: "LA", 4: "RGBA"}[channels]
        np.testing.assert_array_equal(np.asarray(img).reshape(expected.shape), expected)
    if channels != 1:
        assert len(np.unique(expected[:, :, -1])) > 100  # the alpha was upscaled, not dropped or made opaque


def test_image_below_the_minimum_side_as_esc_deploy_upscale(served: Served, photo: Path, tmp_path: Path) -> None:
    """13x9 pixels, under ESC-light's minimum side (17): the image model pads it as upscale does, and
    answers at scale times the original size."""
    with Image.open(photo) as img:
        pixels = np.asarray(img.crop((0, 0, 13, 9)))
    source = tmp_path / "small.png"
    Image.fromarray(pixels).save(source)
    expected = esc_deploy_upscale(served, source)
    assert expected.shape == (36, 52, 3)
    for protocol in PROTOCOLS:
        np.testing.assert_array_equal(infer_image(served, protocol, served.image_model, pixels), expected)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_encoded_file_in_png_out(served: Served, photo: Path, protocol: str) -> None:
    """The file's bytes as they are (PNG, and JPEG): a PNG back, the same pixels as the pixel model's."""
    expected = esc_deploy_upscale(served, photo)
    jpeg = photo.with_suffix(".jpg")
    Image.open(photo).save(jpeg, quality=90)
    jpeg_expected = esc_deploy_upscale(served, jpeg)
    for source, wanted in ((photo, expected), (jpeg, jpeg_expected)):
        data = np.frombuffer(source.read_bytes(), dtype=np.uint8)
        png = infer_image(served, protocol, served.bytes_model, data)
        assert png.dtype == np.uint8 and png.ndim == 1 and png[:8].tobytes() == b"\x89PNG\r\n\x1a\n"
        with Image.open(io.BytesIO(png.tobytes())) as img:
            assert img.format == "PNG" and img.mode == "RGB"
            np.testing.assert_array_equal(np.asarray(img), wanted)


def test_curl_with_the_binary_extension(served: Served, photo: Path, tmp_path: Path) -> None:
    """A request needing no project code and no tritonclient: curl, a JSON header, the file's bytes."""
    body = tmp_path / "request.bin"
    size = photo.stat().st_size
    header = json.dumps({
        "inputs": [{"name": "IMAGE", "shape": [size], "datatype": "UINT8", "parameters": {"binary_data_size": size}}],
        "outputs": [{"name": "IMAGE", "parameters": {"binary_data": True}}],
    }).encode()  # fmt: skip
    body.write_bytes(header + photo.read_bytes())
    response = tmp_path / "response.bin"
    headers = tmp_path / "headers.txt"
    url = f"http://{served.server.http_url}/v2/models/{served.bytes_model}/infer"
    cmd = ["curl", "-sS", "--fail-with-body", "-D", str(headers), "-o", str(response),
           "-H", f"Inference-Header-Content-Length: {len(header)}", "-H", "Content-Type: application/octet-stream",
           "--data-binary", f"@{body}", url]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr + response.read_text(errors="replace")
    json_size = next(
        int(line.split(":")[1]) for line in headers.read_text().splitlines()
        if line.lower().startswith("inference-header-content-length")
    )  # fmt: skip
    raw = response.read_bytes()
    meta = json.loads(raw[:json_size])
    assert meta["outputs"][0]["datatype"] == "UINT8"
    with Image.open(io.BytesIO(raw[json_size:])) as img:
        np.testing.assert_array_equal(np.asarray(img), esc_deploy_upscale(served, photo))


def _stats(served: Served, model: str) -> tuple[int, int, int]:
    """The server's own counts for ``model``: tiles (batch items), requests, executions."""
    import tritonclient.http as http

    client = http.InferenceServerClient(served.server.http_url)
    (stats,) = client.get_inference_statistics(model)["model_stats"]
    client.close()
    requests = stats["inference_stats"]["success"]["count"]
    return int(stats["inference_count"]), int(requests), int(stats["execution_count"])


def test_tiles_of_concurrent_images_meet_in_batches(served: Served, photo: Path) -> None:
    """Two images at once: their tile requests (one per tile shape and image: 4 each) meet in fewer
    executions of the tensor model."""
    pixels = np.asarray(Image.open(photo))
    before = _stats(served, served.model)
    results: list[np.ndarray | None] = [None, None]

    def send(i: int) -> None:
        results[i] = infer_image(served, "grpc", served.image_model, pixels)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tiles, requests, executions = (a - b for a, b in zip(_stats(served, served.model), before, strict=True))
    assert (tiles, requests) == (2 * 6, 2 * 4) and executions < requests, (tiles, requests, executions)
    assert results[0] is not None and results[1] is not None
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("which", ["pixels", "encoded"])
def test_client_whole_image_mode(served: Served, photo: Path, tmp_path: Path, which: str) -> None:
    """serving/triton_client.py on an image model: no client tiling, the picture goes whole (RGBA kept)."""
    with Image.open(photo) as img:
        rgba = img.crop((0, 0, 40, 36)).convert("RGBA")
    rgba.putalpha(Image.fromarray(255 - np.asarray(rgba.convert("L"))))
    source, target = tmp_path / "in.png", tmp_path / "out.png"
    rgba.save(source)
    model = served.image_model if which == "pixels" else served.bytes_model
    client = Path(__file__).resolve().parents[2] / "serving" / "triton_client.py"
    cmd = [sys.executable, str(client), "--url", served.server.http_url, "--model", model, str(source), str(target)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and f"tiled by {model}" in proc.stdout, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "out.png"]  # no temporary file left
    with Image.open(target) as img:
        assert img.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(img), esc_deploy_upscale(served, source))


def _block(text: str, language: str, containing: str) -> str:
    """The fenced ``language`` block of ``text`` that contains ``containing``."""
    blocks = [part.split("```", 1)[0] for part in text.split(f"```{language}\n")[1:]]
    (block,) = [b for b in blocks if containing in b]
    return block


def test_readme_and_docs_requests_work_as_written(served: Served, photo: Path, tmp_path: Path) -> None:
    """The README's tritonclient lines and docs/serving.md's curl lines, run as written (the server's
    address replaced by this server's), give esc-deploy upscale's result."""
    root = Path(__file__).resolve().parents[2]
    url = served.server.http_url
    names = {"esc-light_x4_image_bytes": served.bytes_model, "esc-light_x4_image": served.image_model}
    python = _block((root / "README.md").read_text(), "python", "tritonclient")
    curl = _block((root / "docs" / "serving.md").read_text(), "sh", "curl")
    for model, served_name in names.items():  # the longer name first: it contains the shorter
        python, curl = python.replace(f'"{model}"', f'"{served_name}"'), curl.replace(f"/{model}/", f"/{served_name}/")
    python, curl = python.replace("127.0.0.1:8000", url), curl.replace("127.0.0.1:8000", url)
    (tmp_path / "photo.png").write_bytes(photo.read_bytes())
    Image.open(photo).save(tmp_path / "photo.jpg", quality=95)
    proc = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with Image.open(tmp_path / "photo_x4.png") as img:
        np.testing.assert_array_equal(np.asarray(img), esc_deploy_upscale(served, photo))
    (tmp_path / "photo_x4.png").unlink()
    proc = subprocess.run(["bash", "-euc", curl], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with Image.open(tmp_path / "photo_x4.png") as img:
        assert img.format == "PNG"
        np.testing.assert_array_equal(np.asarray(img), esc_deploy_upscale(served, tmp_path / "photo.jpg"))
