"""The kernel compiles with nvcc for every default architecture, and CMake builds it without TensorRT.

No GPU is needed; both tests are marked ``nvcc`` and skip (with the reason) only where nvcc is absent.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import KERNEL_ARCHS as ARCHS
from tests.conftest import KernelBuild

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "engines" / "plugin"


def run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{output}"
    return result


@pytest.mark.nvcc
def test_kernel_compiles_for_default_architectures(kernel_build: KernelBuild) -> None:
    """One nvcc call, -c only, SASS for sm_80/86/89/90; warnings are errors, no register spills (the compilation
    is tests/conftest.py's compile_kernel, shared with the SASS tests)."""
    assert kernel_build.object.stat().st_size > 0
    for arch in ARCHS:
        assert kernel_build.cubin(arch).stat().st_size > 0
    # ptxas -v reports "Compiling entry function ... for 'sm_XX'" and the spills of each kernel.
    report = kernel_build.ptxas
    for arch in ARCHS:
        count = report.count(f"for 'sm_{arch}'")
        # SIMT: 3 dtype pairs x 2 head sizes; tensor cores: 2 table types x 2 head sizes x 7 windows (the six
        # published sizes and the general kernel; fp16 tensors only).
        assert count == 34, f"expected 34 kernels for sm_{arch}, found {count}"
    # No kernel spills, the tensor-core ones of head size 16 included: they hold 3 blocks per SM (80 registers).
    kernels = re.findall(
        r"Compiling entry function '(\S+)'.*?(\d+) bytes spill stores, (\d+) bytes spill loads", report, re.S
    )
    assert len(kernels) == 34 * len(ARCHS)
    for name, stores, loads in kernels:
        assert (int(stores), int(loads)) == (0, 0), f"{name}: {stores} + {loads} bytes of spills"


@pytest.mark.nvcc
def test_cmake_builds_kernel_library_without_tensorrt(tmp_path: Path) -> None:
    """A TensorRT_ROOT without headers: the kernel library alone is built, with a message."""
    if shutil.which("cmake") is None:
        pytest.skip("needs cmake on PATH")
    build = tmp_path / "build"
    empty_root = tmp_path / "no-tensorrt"
    empty_root.mkdir()
    configure = run(
        [
            "cmake",
            "-S",
            str(PLUGIN_DIR),
            "-B",
            str(build),
            f"-DTensorRT_ROOT={empty_root}",
            "-DCMAKE_CUDA_ARCHITECTURES=80",  # one architecture keeps the test short on small machines
        ]
    )
    run(["cmake", "--build", str(build), "-j", "2"])
    assert (build / "libesc_window_attention.so").is_file()
    if not (build / "libesc_trt_plugin.so").exists():  # TensorRT may still be found in a system folder
        assert "building only the kernel library" in configure.stdout + configure.stderr
