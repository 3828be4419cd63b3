"""``esc-deploy upscale`` upscales real photographs, tiled, with torch and ONNX Runtime (TensorRT needs a
GPU: only its error is shown here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image
from skimage import data

from esc_deploy.serving import upscale
from tests.conftest import GOLDEN_DIR

CHECKPOINT = GOLDEN_DIR / "real_x4.pth"  # two blocks, official format; shares its export with other tests


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.chelsea()[60:130, 120:220]).save(folder / "chelsea.png")  # 70x100: tiled at 48
    Image.fromarray(data.coffee()[100:140, 200:250]).save(folder / "coffee.jpg", quality=95)  # 40x50
    return folder


@pytest.fixture(scope="module")
def real_onnx(exports, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "real_x4.onnx"
    onnx.save(exports.proto("real_x4", "plugin"), str(path))
    return path


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_torch_and_onnxruntime_agree_on_a_tiled_folder(photos: Path, real_onnx: Path, tmp_path: Path) -> None:
    outputs = {}
    for backend, extra in (("torch", ["--checkpoint", str(CHECKPOINT)]), ("onnxruntime", ["--onnx", str(real_onnx)])):
        out = tmp_path / backend
        code = upscale.main([str(photos), str(out), "--backend", backend, *extra, "--tile", "48", "--no-progress"])
        assert code == 0
        outputs[backend] = {p.name: _pixels(p) for p in sorted(out.iterdir())}
    assert sorted(outputs["torch"]) == ["chelsea.png", "coffee.png"]
    assert outputs["torch"]["chelsea.png"].shape == (280, 400, 3)  # 4x the 70x100 photograph
    assert outputs["torch"]["coffee.png"].shape == (160, 200, 3)
    for name, pixels in outputs["torch"].items():
        assert np.abs(pixels - outputs["onnxruntime"][name]).max() <= 1, name  # 8-bit rounding only


def test_tiling_matches_one_call_up_to_the_blend(photos: Path, tmp_path: Path) -> None:
    """Tiles of 48 with overlap 32 against the whole 70x100 image in one call (--tile 128)."""
    whole, tiled = tmp_path / "whole.png", tmp_path / "tiled.png"
    args = [str(photos / "chelsea.png"), "--checkpoint", str(CHECKPOINT), "--no-progress"]
    assert upscale.main([args[0], str(whole), *args[1:], "--tile", "128"]) == 0
    assert upscale.main([args[0], str(tiled), *args[1:], "--tile", "48"]) == 0
    a, b = _pixels(whole), _pixels(tiled)
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    psnr = 10 * np.log10(255**2 / max(mse, 1e-12))
    assert mse > 0 and psnr > 30, psnr  # tiles see less context than the whole image: close, not equal


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.png", "out.png"], "no such image or folder"),
        (["{photos}/chelsea.png", "out.png", "--backend", "onnxruntime", "--onnx", "none.onnx"], "no such ONNX file"),
        (["{photos}/chelsea.png", "out.png", "--backend", "tensorrt"], "needs an engine"),
        (["{photos}/chelsea.png", "out.png", "--tile", "8"], "below the model's minimum side"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    argv: list[str], message: str, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.format(photos=photos) if "{photos}" in a else a for a in argv]
    argv = [str(tmp_path / a) if a in ("out.png", "missing.png", "none.onnx") else a for a in argv]
    assert upscale.main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: upscale: ") and message in err[0], err
    assert not (tmp_path / "out.png").exists()
