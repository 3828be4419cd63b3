"""ESC's fused window-attention CUDA kernel as the torch op ``esc::window_attention``.

The kernel is the one the TensorRT plugin runs (``engines/plugin/escWindowAttentionKernel.cu``):
reflect padding, windowing, the relative-position bias and the crop are index arithmetic inside one launch,
with an online softmax (FlashAttention-style), so neither a padded copy nor the N x N scores ever reach
global memory.

On first use the kernel is compiled with nvcc for the current GPU into a shared library cached under
``$XDG_CACHE_HOME/esc`` (``~/.cache/esc``), keyed by a hash of the sources, the compiler and the flags,
and loaded with ctypes. ``ESC_KERNEL_LIBRARY`` names a prebuilt library instead (the
``libesc_window_attention.so`` of ``engines/plugin/CMakeLists.txt``). Importing this module compiles
nothing and works without CUDA.
"""

import ctypes
import functools
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from esc.kernel_files import KERNEL_SOURCES, LIBRARY_ENV, find_nvcc, kernel_source_dir

HEAD_SIZES = (16, 32)
MIN_WINDOW_SIZE = 8
MAX_WINDOW_SIZE = 64

_NVCC_FLAGS = ("-std=c++17", "-O3", "-shared", "-Xcompiler", "-fPIC", "-cudart", "static")
# EscDataType in escWindowAttentionKernel.h.
_DTYPE_CODES = {torch.float32: 0, torch.float16: 1}


def _find_nvcc() -> str:
    found = find_nvcc()
    if found is None:
        raise RuntimeError(
            "the fused attention needs nvcc (CUDA_HOME, CUDA_PATH or PATH) to compile its kernel, "
            "found none; "
            f"or set {LIBRARY_ENV} to a prebuilt libesc_window_attention.so"
        )
    return found


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "esc"


def compile_kernel_library(capability: tuple[int, int], cache_dir: Path | None = None) -> Path:
    """Compile the kernel for ``sm_<major><minor>`` into the cache (once per source/compiler/flags hash)."""
    sources = kernel_source_dir()
    nvcc = _find_nvcc()
    arch = f"{capability[0]}{capability[1]}"
    flags = [*_NVCC_FLAGS, "-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=False).stdout
    digest = hashlib.sha256()
    for name in KERNEL_SOURCES:
        digest.update((sources / name).read_bytes())
    digest.update("\0".join([nvcc, version, *flags]).encode())
    folder = cache_dir or _cache_dir()
    target = folder / f"libesc_window_attention-sm{arch}-{digest.hexdigest()[:16]}.so"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=target.stem, suffix=".so.partial", dir=folder)
    os.close(fd)
    command = [nvcc, *flags, "-o", partial, str(sources / KERNEL_SOURCES[0])]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"compiling the fused attention kernel failed (exit {result.returncode}): "
                f"{' '.join(command)}\n"
                f"{result.stderr[-4000:]}"
            )
        os.replace(partial, target)  # atomic: concurrent builders publish identical files
    finally:
        Path(partial).unlink(missing_ok=True)
    return target


@functools.cache
def _load_library(capability: tuple[int, int]) -> ctypes.CDLL:
    prebuilt = os.environ.get(LIBRARY_ENV)
    if prebuilt:
        if not Path(prebuilt).is_file():
            raise RuntimeError(f"expected {LIBRARY_ENV} to name the kernel library, found no file {prebuilt}")
        path = Path(prebuilt)
    else:
        path = compile_kernel_library(capability)
    library = ctypes.CDLL(str(path))
    library.escWindowAttention.argtypes = [
        ctypes.c_int32,  # dtype
        ctypes.c_int32,  # table dtype
        ctypes.c_void_p,  # qkv
        ctypes.c_void_p,  # table
        ctypes.c_void_p,  # out
        ctypes.c_int32,  # batch
        ctypes.c_int32,  # channels (C)
        ctypes.c_int32,  # num_heads
        ctypes.c_int32,  # height
        ctypes.c_int32,  # width
        ctypes.c_int32,  # window_size
        ctypes.c_void_p,  # cudaStream_t
    ]
    library.escWindowAttention.restype = ctypes.c_int32
    library.escWindowAttentionErrorString.argtypes = [ctypes.c_int32]
    library.escWindowAttentionErrorString.restype = ctypes.c_char_p
    return library


def _output_shape(qkv: Tensor, table: Tensor, num_heads: int, window_size: int) -> tuple[int, int, int, int]:
    """Check the node's inputs (shapes and dtypes only, so that fake tensors pass) and return (B, C, H, W)."""
    if qkv.dim() != 4:
        raise ValueError(f"expected qkv of shape (B, 3C, H, W), found {tuple(qkv.shape)}")
    if qkv.dtype not in _DTYPE_CODES:
        raise ValueError(f"expected qkv of dtype float16 or float32, found {qkv.dtype}")
    if table.dtype not in (torch.float32, qkv.dtype):
        raise ValueError(f"expected a float32 or {qkv.dtype} table, found {table.dtype}")
    if not MIN_WINDOW_SIZE <= window_size <= MAX_WINDOW_SIZE:
        raise ValueError(f"expected window_size in [{MIN_WINDOW_SIZE}, {MAX_WINDOW_SIZE}], found {window_size}")
    if num_heads < 1:
        raise ValueError(f"expected num_heads >= 1, found {num_heads}")
    b, c3, h, w = qkv.shape
    if c3 % (3 * num_heads) != 0 or c3 // (3 * num_heads) not in HEAD_SIZES:
        raise ValueError(
            f"expected 3 * {num_heads} heads * head size {HEAD_SIZES} qkv channels, found {c3} "
            f"(head size {c3 / (3 * num_heads):g})"
        )
    side = 2 * window_size - 1
    if tuple(table.shape) != (num_heads, side * side):
        raise ValueError(f"expected a table of shape ({num_heads}, {side * side}), found {tuple(table.shape)}")
    for name, size in (("height", h), ("width", w)):
        pad = (window_size - size % window_size) % window_size
        if pad >= size:
            raise ValueError(
                f"expected {name} > reflect padding for window {window_size}, found {name} {size}, padding {pad}"
            )
    return b, c3 // 3, h, w


def launch_window_attention(qkv: Tensor, table: Tensor, out: Tensor, num_heads: int, window_size: int) -> None:
    """Run the kernel into ``out`` on the current CUDA stream; every tensor dense, on one CUDA device.

    qkv: (B, 3C, H, W), channels ordered (qkv heads c); table: (heads, (2w-1)^2), float32 or qkv's dtype;
    out: (B, C, H, W), qkv's dtype. Every element of ``out`` is written.
    """
    shape = _output_shape(qkv, table, num_heads, window_size)
    for name, tensor in (("qkv", qkv), ("table", table), ("out", out)):
        if tensor.device.type != "cuda" or tensor.device != qkv.device:
            raise ValueError(f"expected {name} on one CUDA device with qkv, found {tensor.device}")
        if not tensor.is_contiguous():
            raise ValueError(f"expected a contiguous {name}")
    if tuple(out.shape) != shape or out.dtype != qkv.dtype:
        raise ValueError(f"expected out {shape} {qkv.dtype}, found {tuple(out.shape)} {out.dtype}")
    if out.numel() == 0:
        return
    b, c, h, w = shape
    library = _load_library(torch.cuda.get_device_capability(qkv.device))
    with torch.cuda.device(qkv.device):
        stream = torch.cuda.current_stream(qkv.device).cuda_stream
        status = library.escWindowAttention(
            _DTYPE_CODES[qkv.dtype],
            _DTYPE_CODES[table.dtype],
            qkv.data_ptr(),
            table.data_ptr(),
            out.data_ptr(),
            b,
            c,
            num_heads,
            h,
            w,
            window_size,
            stream,
        )
    if status != 0:
        message = library.escWindowAttentionErrorString(status).decode()
        raise RuntimeError(f"the fused window attention kernel failed: {message} (cudaError_t {status})")


@torch.library.custom_op("esc::window_attention", mutates_args=())
def _window_attention(qkv: Tensor, table: Tensor, num_heads: int, window_size: int) -> Tensor:
    out = qkv.new_empty(_output_shape(qkv, table, num_heads, window_size))
    launch_window_attention(qkv.contiguous(), table.contiguous(), out, num_heads, window_size)
    return out


@_window_attention.register_fake
def _window_attention_fake(qkv: Tensor, table: Tensor, num_heads: int, window_size: int) -> Tensor:
    return qkv.new_empty(_output_shape(qkv, table, num_heads, window_size))


def fused_window_attention(qkv: Tensor, table: Tensor, num_heads: int, window_size: int) -> Tensor:
    """ESC's window attention of one qkv map by the fused kernel (inference only: no backward).

    qkv: (B, 3C, H, W) float16/float32 on CUDA, channels ordered (qkv heads c) with head size 16 or 32;
    table: (heads, (2w-1)^2) relative-position bias, float32 or qkv's dtype (other float dtypes are cast to
    float32). Returns (B, C, H, W) in qkv's dtype.
    """
    if table.dtype not in (torch.float32, qkv.dtype):
        table = table.float()
    return torch.ops.esc.window_attention(qkv, table, num_heads, window_size)
