"""engines/cpp without TensorRT: configure, build, run its CTest suite, and compare its tile grid and
blend weights with esc/tiling.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from esc.tiling import axis_weights, tile_grid, tile_spans

SOURCE = Path(__file__).resolve().parents[2] / "engines" / "cpp"
CXX = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")

pytestmark = [
    pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake on PATH"),
    pytest.mark.skipif(CXX is None, reason="needs a C++ compiler (c++, g++ or clang++)"),
]


def _run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, **kwargs)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = tmp_path_factory.mktemp("cpp_build")
    # An empty TensorRT_ROOT and no CUDA toolkit lookup outside the system: the runner is skipped.
    configure = _run(["cmake", "-S", str(SOURCE), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                      f"-DCMAKE_CXX_COMPILER={CXX}", "-DTensorRT_ROOT="])  # fmt: skip
    assert configure.returncode == 0, configure.stdout + configure.stderr
    compiled = _run(["cmake", "--build", str(build), "-j", "2"])
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    return build


def test_ctest(build_dir: Path) -> None:
    result = _run(["ctest", "--output-on-failure"], cwd=build_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "100% tests passed" in result.stdout


@pytest.mark.parametrize(
    ("height", "width", "tile", "overlap", "align", "scale"),
    [
        (64, 64, (64, 64), 16, 1, 4),
        (100, 200, (64, 64), 16, 1, 2),
        (97, 333, (64, 48), 16, 1, 3),
        (97, 130, (64, 64), 16, 32, 4),
        (33, 65, (16, 16), 4, 8, 1),
        (5, 500, (5, 37), 4, 1, 2),
    ],
)
def test_grid_matches_python(
    build_dir: Path, height: int, width: int, tile: tuple[int, int], overlap: int, align: int, scale: int
) -> None:
    args = [str(a) for a in (height, width, *tile, overlap, align, scale)]
    result = _run([str(build_dir / "esc_cpp_tests"), "grid", *args])
    assert result.returncode == 0, result.stderr
    cpp = json.loads(result.stdout)
    assert [tuple(t) for t in cpp["tiles"]] == tile_grid(height, width, tile=tile, overlap=overlap, align=align)
    for key, size, side in (("row_weights", height, tile[0]), ("col_weights", width, tile[1])):
        expected = axis_weights(tile_spans(size, side, overlap, align), scale)
        assert len(cpp[key]) == len(expected)
        for got, want in zip(cpp[key], expected, strict=True):
            np.testing.assert_allclose(np.array(got), want, rtol=0, atol=1e-15)


def test_grid_rejects_what_python_rejects(build_dir: Path) -> None:
    result = _run([str(build_dir / "esc_cpp_tests"), "grid", "100", "100", "16", "16", "16", "1", "2"])
    assert result.returncode == 2 and "overlap" in result.stderr and result.stdout == ""
    with pytest.raises(ValueError, match="overlap"):
        tile_spans(100, 16, 16)
