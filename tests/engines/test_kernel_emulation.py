"""The fused kernel's device source, run on the CPU, against the float64 reference.

``tests/engines/emulation`` compiles the kernel bodies of ``engines/plugin`` (the exact source the GPU runs) and
their launch plan with the host compiler, over a CPU emulation of the few primitives they use: block barriers,
warp shuffles and mma.sync m16n8k16 in the PTX ISA's fragment layout, one fiber per CUDA thread. This checks the
index arithmetic (windows, reflect padding, bias lookup, crop), the online softmax and the tensor-core fragment
bookkeeping on machines without a GPU, and (with only the CUDA launch swapped for the emulated one) that the
model's ``fused`` backend reproduces the official golden outputs. It says nothing about speed, hardware rounding
or memory ordering; the CUDA tests (test_fused_attention.py) remain the GPU proof.
"""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import pytest
import torch

from tests.engines.window_reference import Shape, random_inputs, reference_window_attention

ROOT = Path(__file__).resolve().parents[2]
EMULATION_DIR = Path(__file__).resolve().parent / "emulation"
PLUGIN_DIR = ROOT / "engines" / "plugin"
DTYPE_CODES = {torch.float32: 0, torch.float16: 1}
SIMT, TENSOR_CORE = 0, 1  # esc::KernelBody
INVALID_VALUE = 1  # escWindowAttentionEmulated's code for arguments the CUDA launcher refuses

# Chosen to keep the emulation (about 0.15 s per 256-thread block of a 32x32 window) short: odd sizes, batch > 1,
# head size 16 and 32, windows 8/16/24/32/40/48 and 9 (not a multiple of 8: the SIMT body in fp16 too), padding on
# either side.
SHAPES: list[Shape] = [
    (2, 32, 2, 13, 21, 8),  # d=16, batch 2, padding on both sides
    (1, 64, 2, 37, 29, 8),  # d=32
    (3, 32, 1, 16, 24, 8),  # d=32, no padding, batch 3
    (1, 32, 2, 20, 14, 9),  # d=16, N = 81 tokens
    (1, 16, 1, 20, 27, 32),  # d=16, ESC's window, one padded window
    (1, 32, 1, 33, 20, 32),  # d=32, two windows, the second almost all padding
    (1, 16, 1, 30, 25, 48),  # d=16, ESC-XL's window
    (1, 16, 1, 20, 30, 24),  # d=16, 576 tokens: 6 warps per block in the tensor-core body
    (1, 64, 2, 24, 17, 24),  # d=32, 6 warps per block, padding on the right
    (2, 32, 2, 16, 31, 16),  # d=16, batch 2, 256 tokens
    # Widths and planes that are multiples of 8: the tensor-core body stages by cp.async, except in windows whose
    # columns are reflected at the right edge.
    (1, 16, 1, 40, 32, 32),  # d=16, cp.async in both windows, the bottom one's rows reflected
    (2, 64, 2, 24, 48, 24),  # d=32, batch 2, 6 warps, cp.async
    (1, 16, 1, 40, 40, 40),  # d=16, a window without a kernel of its own (the general kernel), cp.async
    (1, 16, 1, 24, 56, 16),  # d=16, cp.async except the last window column (reflected)
    (1, 16, 1, 48, 48, 48),  # d=16, ESC-XL's window by cp.async (its key tiles do not start window rows)
]
# (qkv dtype, table dtype, tensor cores allowed): fp32 always runs the SIMT body; fp16 runs the tensor-core body
# for window sizes that are multiples of 8 where the device has mma.sync (sm_80+), the SIMT body otherwise.
MODES = [
    (torch.float32, torch.float32, True),
    (torch.float16, torch.float32, True),
    (torch.float16, torch.float16, True),
    (torch.float16, torch.float32, False),
]


@pytest.fixture(scope="module")
def emulated(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    library = tmp_path_factory.mktemp("emulation") / "libesc_window_attention_emulated.so"
    # nvcc hands a .cpp file to the host compiler as plain C++, with the CUDA headers (cuda_fp16.h) on its path.
    host_flags = [
        "-fPIC",
        "-fno-strict-aliasing",  # the bodies reinterpret shared memory, as CUDA code does
        "-Wall",
        "-Wextra",
        "-Werror",
        "-Wno-unknown-pragmas",  # '#pragma unroll' is for nvcc
    ]
    command = [
        "nvcc",
        "-std=c++17",
        "-O2",
        "-shared",
        "-cudart",
        "none",
        "-Xcompiler",
        ",".join(host_flags),
        f"-I{EMULATION_DIR}",
        f"-I{PLUGIN_DIR}",
        str(EMULATION_DIR / "emulatedWindowAttention.cpp"),
        "-o",
        str(library),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stderr[-4000:]}"
    lib = ctypes.CDLL(str(library))
    lib.escWindowAttentionEmulated.restype = ctypes.c_int32
    return lib


def run_emulated(
    lib: ctypes.CDLL, qkv: torch.Tensor, table: torch.Tensor, out: torch.Tensor, heads: int, ws: int, tensor_cores: bool
) -> tuple[int, int]:
    """(status, kernel body) of one emulated launch writing ``out``."""
    body = ctypes.c_int32(-1)
    b, _, h, w = qkv.shape
    status = lib.escWindowAttentionEmulated(
        DTYPE_CODES[qkv.dtype],
        DTYPE_CODES[table.dtype],
        ctypes.c_void_p(qkv.data_ptr()),
        ctypes.c_void_p(table.data_ptr()),
        ctypes.c_void_p(out.data_ptr()),
        b,
        out.shape[1],
        heads,
        h,
        w,
        ws,
        int(tensor_cores),
        ctypes.byref(body),
    )
    return status, body.value


@pytest.mark.nvcc
@pytest.mark.parametrize("mode", MODES, ids=["fp32", "fp16-table32", "fp16-table16", "fp16-simt"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "b{}_c{}_h{}_{}x{}_w{}".format(*s))
def test_emulated_kernel_matches_reference(
    emulated: ctypes.CDLL, shape: Shape, mode: tuple[torch.dtype, torch.dtype, bool]
) -> None:
    dtype, table_dtype, tensor_cores = mode
    b, c, heads, h, w, ws = shape
    qkv, table = random_inputs(shape, dtype, seed=sum(shape), device="cpu")
    table = table.to(table_dtype)
    out = torch.full((b, c, h, w), float("nan"), dtype=dtype)  # every element must be written
    status, body = run_emulated(emulated, qkv, table, out, heads, ws, tensor_cores)
    assert status == 0
    expected_body = TENSOR_CORE if dtype == torch.float16 and tensor_cores and ws % 8 == 0 else SIMT
    assert body == expected_body
    expected = reference_window_attention(qkv, table, heads, ws)
    assert not out.isnan().any()
    if dtype == torch.float32:
        error = (out.double() - expected).abs().max().item()
        assert error <= 1e-5, f"max abs error {error:.3g} > 1e-5"
    else:
        relative = ((out.double() - expected).norm() / expected.norm()).item()
        assert relative <= 5e-3, f"relative L2 error {relative:.3g} > 5e-3"
        # Also per element, so that a few wrong pixels (a bias offset, a window edge) cannot hide in the norm.
        error = (out.double() - expected).abs().max().item()
        assert error <= 5e-3, f"max abs error {error:.3g} > 5e-3"


@pytest.mark.nvcc
@pytest.mark.parametrize("shape", [(1, 16, 1, 40, 32, 32), (1, 64, 2, 37, 29, 8)], ids=["w32_cp_async", "w8_d32"])
def test_emulated_tensor_core_body_with_peaked_scores(emulated: ctypes.CDLL, shape: Shape) -> None:
    """qkv scaled by 6: scores spread over tens of log2 units, so that probabilities against a stale maximum
    overflow fp16 and a missed rescale (online softmax) shows."""
    b, c, heads, h, w, ws = shape
    qkv, table = random_inputs(shape, torch.float32, seed=7, device="cpu")
    qkv = (qkv * 6).half()
    out = torch.full((b, c, h, w), float("nan"), dtype=torch.float16)
    status, body = run_emulated(emulated, qkv, table, out, heads, ws, tensor_cores=True)
    assert (status, body) == (0, TENSOR_CORE)
    expected = reference_window_attention(qkv, table, heads, ws)
    error = (out.double() - expected).abs().max().item()
    assert error <= 6 * 5e-3, f"max abs error {error:.3g} > {6 * 5e-3:.3g}"


@pytest.mark.nvcc
@pytest.mark.parametrize(
    ("shape", "why"),
    [
        ((1, 32, 2, 13, 21, 4), "window below 8"),
        ((1, 32, 2, 13, 21, 72), "window above 64"),
        ((1, 48, 2, 13, 21, 8), "head size 24"),
        ((1, 32, 2, 3, 21, 8), "reflect padding 5 >= height 3"),
    ],
)
def test_emulated_launch_refuses_unsupported_arguments(emulated: ctypes.CDLL, shape: Shape, why: str) -> None:
    b, c, heads, h, w, ws = shape
    qkv = torch.zeros(b, 3 * c, h, w, dtype=torch.float16)
    table = torch.zeros(heads, (2 * ws - 1) ** 2)
    out = torch.full((b, c, h, w), float("nan"), dtype=torch.float16)
    status, _ = run_emulated(emulated, qkv, table, out, heads, ws, tensor_cores=True)
    assert status == INVALID_VALUE, why
    assert out.isnan().all(), "a refused launch must not write"


def emulated_launch(lib: ctypes.CDLL):  # -> a stand-in for esc.fused_attention.launch_window_attention
    def launch(qkv: torch.Tensor, table: torch.Tensor, out: torch.Tensor, num_heads: int, window_size: int) -> None:
        status, _ = run_emulated(lib, qkv, table, out, num_heads, window_size, tensor_cores=True)
        assert status == 0, f"emulated launch refused {tuple(qkv.shape)}, heads {num_heads}, window {window_size}"

    return launch


@pytest.mark.nvcc
@pytest.mark.parametrize("name", ["light_x4", "fp_x4", "real_x4"])  # tiny_x2 has head size 8: not a kernel size
def test_model_with_fused_backend_reproduces_golden_output(
    emulated: ctypes.CDLL, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """The official outputs, through the model's `fused` backend with only the CUDA launch emulated.

    Everything above the launch is the production path: esc.attention's `fused` backend, the registered
    esc::window_attention op, its shape checks and output allocation, and the kernel's argument order.
    """
    import esc
    import esc.fused_attention
    from tests.conftest import GOLDEN_DIR, load_golden

    monkeypatch.setattr(esc.fused_attention, "launch_window_attention", emulated_launch(emulated))
    golden = load_golden(name)
    model = esc.load_model(GOLDEN_DIR / f"{name}.pth", attention="fused")
    with torch.inference_mode():
        out = model(golden["input"])
    error = (out - golden["output"]).abs().max().item()
    assert error <= 1e-4, f"max abs error {error:.3g} vs the official output (bound of tests/esc/test_golden.py)"
