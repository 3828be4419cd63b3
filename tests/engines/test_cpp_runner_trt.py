"""engines/cpp's TensorRT runner built with TensorRT 11.x headers and linked with a real TensorRT library
(the 11.4 lean runtime, TensorRT for RTX 1.7), run on a machine without a GPU: every failure is one line on
stderr and exit status 2, never a crash; what needs no GPU is checked before the GPU is touched."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, header_dir, skip_or_fail

pytestmark = [pytest.mark.tensorrt_rtx, pytest.mark.tensorrt_lean, pytest.mark.trt_headers]

SOURCE = REPO / "engines" / "cpp"


def runtime_library(flavour: str) -> Path:
    if flavour == "lean":
        import tensorrt_lean_libs

        return next(Path(tensorrt_lean_libs.__path__[0]).glob("libnvinfer_lean.so.*"))
    import tensorrt_rtx_libs

    return next(Path(tensorrt_rtx_libs.__path__[0]).glob("libtensorrt_rtx.so.*"))


@pytest.fixture(scope="module", params=["lean", "rtx"])
def runner(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    headers = header_dir(11)
    if headers is None:
        skip_or_fail("needs TensorRT 11.x headers: set TensorRT_INCLUDE_DIR", "trt_headers")
    if shutil.which("nvcc") is None:  # the CUDA toolkit provides cuda_runtime_api.h and libcudart
        skip_or_fail("needs the CUDA toolkit (nvcc)", "nvcc")
    build = tmp_path_factory.mktemp(f"cpp_{request.param}")
    for command in (
        ["cmake", "-S", str(SOURCE), "-B", str(build), f"-DTensorRT_INCLUDE_DIR={headers}",
         f"-DTensorRT_LIBRARY={runtime_library(request.param)}", "-DESC_REQUIRE_TENSORRT=ON"],
        ["cmake", "--build", str(build), "-j", "2", "--target", "esc_trt_runner"],
    ):  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return build / "esc_trt_runner"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import numpy as np
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("image") / "astronaut.png"
    Image.fromarray(np.ascontiguousarray(data.astronaut()[::8, ::8])).save(path)
    return path


def run(runner: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(runner), *args], capture_output=True, text=True, timeout=120, check=False)


def one_line_exit_2(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)  # a crash is -11 / 139
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("esc_trt_runner: error: "), result.stderr
    assert message in lines[0]


def test_help(runner: Path) -> None:
    result = run(runner, "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: esc_trt_runner --engine ENGINE")


def test_missing_engine(runner: Path, image: Path, tmp_path: Path) -> None:
    result = run(
        runner, "--engine", str(tmp_path / "none.engine"), "--input", str(image), "--output", str(tmp_path / "o.png")
    )
    one_line_exit_2(result, "cannot open engine")


def test_corrupt_engine_and_no_gpu(runner: Path, image: Path, tmp_path: Path) -> None:
    """Deserializing needs a GPU: without one the runner says so, in one line, instead of crashing after
    TensorRT's CUDA initialisation failure."""
    import torch

    engine = tmp_path / "corrupt.engine"
    engine.write_bytes(b"not an engine\n" * 100)
    result = run(runner, "--engine", str(engine), "--input", str(image), "--output", str(tmp_path / "o.png"))
    one_line_exit_2(result, "cannot deserialize" if torch.cuda.is_available() else "no CUDA GPU is usable")
    assert not (tmp_path / "o.png").exists()


def test_empty_engine(runner: Path, image: Path, tmp_path: Path) -> None:
    (tmp_path / "empty.engine").touch()
    result = run(
        runner, "--engine", str(tmp_path / "empty.engine"), "--input", str(image), "--output", str(tmp_path / "o.png")
    )
    one_line_exit_2(result, "is empty")


def test_plugin_of_the_wrong_major(runner: Path, image: Path, trt10_plugin: Path, tmp_path: Path) -> None:
    engine = tmp_path / "x.engine"
    engine.write_bytes(b"x" * 64)
    result = run(runner, "--engine", str(engine), "--input", str(image), "--output", str(tmp_path / "o.png"),
                 "--plugin", str(trt10_plugin))  # fmt: skip
    one_line_exit_2(result, "was built with TensorRT 10.x headers; this runner uses TensorRT 11.x")


def test_plugin_that_is_not_a_library(runner: Path, image: Path, tmp_path: Path) -> None:
    engine = tmp_path / "x.engine"
    engine.write_bytes(b"x" * 64)
    fake = tmp_path / "libfake.so"
    fake.write_text("not a library\n")
    result = run(runner, "--engine", str(engine), "--input", str(image), "--output", str(tmp_path / "o.png"),
                 "--plugin", str(fake))  # fmt: skip
    one_line_exit_2(result, "is not a shared library")


def test_missing_value(runner: Path) -> None:
    one_line_exit_2(run(runner, "--engine"), "missing value after --engine")
