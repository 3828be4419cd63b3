"""Where the fused kernel's CUDA sources are: engines/plugin in a checkout, ``esc/kernel_sources`` in a wheel
(pyproject maps that package to engines/plugin and ships only these files, not the TensorRT wrapper), so that
an installed wheel compiles the same files as a checkout does.

No torch here: the SASS tool (validation/kernel/sass.py) reads the same files without the model.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

LIBRARY_ENV = "ESC_KERNEL_LIBRARY"  # a prebuilt libesc_window_attention.so instead of compiling these

# The .cu first (the one compiled); every file it includes, so that an edit to any of them rebuilds the cache.
KERNEL_SOURCES = (
    "escWindowAttentionKernel.cu",
    "escWindowAttentionKernel.h",
    "escWindowAttentionPlan.h",
    "escDevicePrimitives.cuh",
    "escWindowAttentionCommon.cuh",
    "escWindowAttentionSimt.cuh",
    "escWindowAttentionMma.cuh",
)


def kernel_source_dir() -> Path:
    """The folder holding KERNEL_SOURCES; RuntimeError (one line) where a file is missing."""
    installed, checkout = Path(__file__).with_name("kernel_sources"), Path(__file__).parents[1] / "engines" / "plugin"
    folder = installed if installed.is_dir() else checkout
    missing = [name for name in KERNEL_SOURCES if not (folder / name).is_file()]
    if missing:
        raise RuntimeError(
            f"expected the kernel sources {', '.join(missing)} in {folder}: reinstall esc-deploy (or pip install -e . "
            f"in a checkout); otherwise build libesc_window_attention.so with engines/plugin/CMakeLists.txt and "
            f"set {LIBRARY_ENV} to its path"
        )
    return folder


def find_nvcc() -> str | None:
    """nvcc from CUDA_HOME, CUDA_PATH, PATH or /usr/local/cuda (the project's one search), or None."""
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")):
        if root and (Path(root) / "bin" / "nvcc").is_file():
            return str(Path(root) / "bin" / "nvcc")
    default = Path("/usr/local/cuda/bin/nvcc")
    return shutil.which("nvcc") or (str(default) if default.is_file() else None)
