"""The ``Runner`` protocol: numpy float32 NCHW batch in, the upscaled batch out, and the model's facts.

Every backend (torch with each attention, ONNX Runtime, a TensorRT engine, a Triton server) is one class
with this shape, so upscale, the Triton client, parity and the benchmarks drive them the same way::

    with open_runner("onnxruntime", onnx=Path("build/esc-light_x4.onnx")) as runner:
        y = runner(x)  # (n, 3, h, w) float32 in [0, 1] -> (n, 3, h*s, w*s) float32

A runner accepts any input inside ``facts`` (sides from ``min_hw`` to ``max_hw``, batch up to ``max_batch``);
esc_deploy.runtime.tiles pads, tiles and batches images to fit.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np

from esc_deploy.runtime.facts import ModelFacts

if TYPE_CHECKING:
    from typing_extensions import Self

BackendKind = Literal["torch", "onnxruntime", "tensorrt", "triton"]
BACKEND_KINDS: tuple[BackendKind, ...] = ("torch", "onnxruntime", "tensorrt", "triton")


@runtime_checkable
class Runner(Protocol):
    facts: ModelFacts

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(n, 3, h, w) float32 -> (n, 3, h*scale, w*scale) float32, on the host."""
        ...

    def describe(self) -> str: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class RunnerBase:
    """Context management and the output shape check, shared by the implementations."""

    facts: ModelFacts

    def close(self) -> None:
        """Release the backend's resources (sessions, contexts, connections); the default has none."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def checked(self, batch: np.ndarray, out: np.ndarray) -> np.ndarray:
        n, c, h, w = batch.shape
        s = self.facts.scale
        if out.shape != (n, c, h * s, w * s):
            raise RuntimeError(f"{self.facts.source}: output shape {out.shape}, expected {(n, c, h * s, w * s)}")
        return np.asarray(out, dtype=np.float32)


def open_runner(
    kind: BackendKind,
    *,
    checkpoint: Path | None = None,
    attention: str | None = None,
    onnx: Path | None = None,
    engine: Path | None = None,
    plugin: Path | None = None,
    url: str | None = None,
    model: str | None = None,
    protocol: Literal["http", "grpc"] = "http",
    device: str = "cpu",
) -> Runner:
    """The runner of ``kind`` from what it runs (ValueError, one line, for what is missing)."""
    if kind == "torch":
        from esc_deploy.runtime.torch_runner import TorchRunner

        return TorchRunner.from_checkpoint(checkpoint, attention=attention, device=device)
    if kind == "onnxruntime":
        from esc_deploy.runtime.ort_runner import OrtRunner

        if onnx is None or not onnx.is_file():
            raise ValueError(f"{onnx}: no such ONNX file (python export/to_onnx.py writes it)")
        return OrtRunner(onnx, arena=True)
    if kind == "tensorrt":
        if engine is None:
            raise ValueError("the tensorrt backend needs an engine (python export/build_engine.py writes one)")
        from esc_deploy.runtime.engine import TensorRTRunner

        return TensorRTRunner(engine, plugin=plugin)
    if kind == "triton":
        if url is None or model is None:
            raise ValueError("the triton backend needs a server URL and a model name")
        from esc_deploy.runtime.triton import connect

        return connect(url, model, protocol)
    raise ValueError(f"unknown backend {kind!r}; expected one of {', '.join(BACKEND_KINDS)}")


# ------------------------------------------------------------------------------------------------ availability


def skip_reason(
    kind: BackendKind, *, device: str = "cpu", attention: str | None = None, precision: str = "fp32"
) -> str | None:
    """Why a backend cannot run on this machine, or None when it can."""
    if kind == "torch":
        if attention in ("flex", "fused") and device != "cuda":
            flex = "compiled FlexAttention (inductor cannot compile it for CPU in torch 2.13)"
            return "needs a CUDA device: " + (flex if attention == "flex" else "this project's CUDA kernel")
        if attention == "fused":
            from esc.kernel_files import LIBRARY_ENV, find_nvcc

            if not (os.environ.get(LIBRARY_ENV) or find_nvcc()):
                return f"needs nvcc to compile the fused kernel, or {LIBRARY_ENV} naming a prebuilt library"
        if precision == "fp16" and device == "cpu":
            from esc_deploy.runtime.torch_runner import torch_cpu_half_works

            if not torch_cpu_half_works():
                return "needs CUDA (this torch has no float16 convolution on the CPU)"
        return None
    if kind == "onnxruntime":
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed"
        if device == "cuda":
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                return "this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
        return None
    if kind == "tensorrt":
        from esc_deploy.export.trt.env import cannot_run_engines

        return cannot_run_engines()
    if kind == "triton":
        return None if importlib.util.find_spec("tritonclient") else "tritonclient is not installed"
    return f"unknown backend {kind!r}"
