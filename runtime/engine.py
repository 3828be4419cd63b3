"""Run a built engine from Python: ``EngineRunner`` on torch CUDA tensors (benchmarks time it without copies),
``TensorRTRunner`` as a numpy ``Runner`` (upscale, parity).

    runner = EngineRunner(Path("build/esc-light_x4_fp16_....engine"))
    y = runner(x)  # x: (N, 3, H, W) CUDA tensor inside the engine's profile -> (N, 3, sH, sW)

Before deserializing, the sidecar is checked against what is loaded (TensorRT version, plugin
library hash and version): a mismatch is one clear error, not a crash inside TensorRT.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from esc_deploy.common.files import sha256_file
from esc_deploy.export.precision import Precision
from esc_deploy.export.shape_profile import Shape, ShapeProfile, check_shape_in_profile, format_shape
from esc_deploy.export.trt.env import MissingDependencyError, require_cuda_gpu, require_runtime
from esc_deploy.export.trt.plugin import load_plugin_library
from esc_deploy.export.trt.sidecar import EngineSidecar
from esc_deploy.runtime.facts import ModelFacts
from esc_deploy.runtime.runner import RunnerBase

if TYPE_CHECKING:
    import tensorrt as trt
    import torch


class EngineMismatchError(RuntimeError):
    """The engine was built for another TensorRT, plugin or tensor layout than the one here."""


def plugin_for(sidecar: EngineSidecar, plugin: Path | None) -> Path | None:
    """The plugin library to load: the one given, else the one the engine was built with."""
    if plugin is not None:
        return plugin
    return None if sidecar.plugin is None else Path(sidecar.plugin.path)


def profile_from_dims(dims: Sequence[Sequence[int]]) -> ShapeProfile:
    """[min, opt, max] as TensorRT reports them -> ShapeProfile (validated like the build's)."""
    if len(dims) != 3:
        raise ValueError(f"expected [min, opt, max] profile shapes, found {len(dims)} shapes")
    shapes = [tuple(int(d) for d in s) for s in dims]
    for s in shapes:
        if len(s) != 4:
            raise ValueError(f"expected an NCHW profile, found shape {format_shape(s)}")
    lo, mid, hi = ((s[0], s[1], s[2], s[3]) for s in shapes)
    return ShapeProfile(lo, mid, hi)


def _dims(dims: trt.Dims) -> tuple[int, ...]:
    """trt.Dims -> tuple (Dims behaves like a tuple at run time; the stubs only give it len and [])."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def _torch_dtype(trt_module: Any, dtype: trt.DataType) -> torch.dtype:
    import torch

    table = {
        trt_module.float32: torch.float32,
        trt_module.float16: torch.float16,
        trt_module.bfloat16: torch.bfloat16,
    }
    if dtype not in table:
        raise EngineMismatchError(f"expected a float32/float16/bfloat16 I/O tensor, found {dtype}")
    return table[dtype]


class EngineRunner:
    """One engine, one execution context, one optimization profile; inputs of any shape inside it."""

    def __init__(self, engine_path: Path, *, plugin: Path | None = None, device: int = 0) -> None:
        sidecar = EngineSidecar.read(engine_path)
        runtime = require_runtime(sidecar.runtime.value)
        require_cuda_gpu(device)
        plugin_path = plugin_for(sidecar, plugin)
        plugin_sha = None
        if plugin_path is not None:
            if not plugin_path.is_file():
                raise MissingDependencyError(f"plugin library {plugin_path} (from the sidecar) not found")
            plugin_sha = sha256_file(plugin_path)
        problems = sidecar.compatibility_problems(
            runtime=runtime.flavour, runtime_version=runtime.version_text, plugin_sha256=plugin_sha
        )
        if problems:
            raise EngineMismatchError(
                f"engine {engine_path} cannot run here: {'; '.join(problems)}; rebuild it with "
                "`python export/build_engine.py`"
            )
        runtime.prepare_process()
        if plugin_path is not None:
            load_plugin_library(plugin_path, runtime)
        self.path = engine_path
        self.sidecar = sidecar
        self._load(runtime.module(), engine_path, device)

    def _load(self, trt_module: Any, engine_path: Path, device: int) -> None:
        import torch

        self.device = torch.device("cuda", device)
        self._logger = trt_module.Logger(trt_module.Logger.WARNING)
        self._runtime = trt_module.Runtime(self._logger)
        with torch.cuda.device(self.device):
            engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
            if engine is None:
                raise EngineMismatchError(f"TensorRT could not deserialize {engine_path} (see the messages above)")
            context = engine.create_execution_context()
            if context is None:
                raise MemoryError(f"could not create an execution context for {engine_path} (device memory?)")
        self.engine: trt.ICudaEngine = engine
        self.context: trt.IExecutionContext = context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt_module.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt_module.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise EngineMismatchError(f"expected one input and one output, found inputs {inputs}, outputs {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_dtype = _torch_dtype(trt_module, engine.get_tensor_dtype(self.input_name))
        self.output_dtype = _torch_dtype(trt_module, engine.get_tensor_dtype(self.output_name))
        self.profile = profile_from_dims([_dims(d) for d in engine.get_tensor_profile_shape(self.input_name, 0)])

    @property
    def device_memory_bytes(self) -> int:
        """Scratch memory of one execution context (device_memory_size_v2; the v1 name left in 11.x)."""
        size = getattr(self.engine, "device_memory_size_v2", None)
        return int(size) if size is not None else int(self.engine.device_memory_size)

    def check_shape(self, shape: Sequence[int]) -> Shape:
        return check_shape_in_profile(shape, self.profile)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) CUDA tensor -> output tensor, enqueued on the current torch stream (no sync)."""
        import torch

        shape = self.check_shape(tuple(x.shape))
        if x.device != self.device:
            raise ValueError(f"expected the input on {self.device}, found it on {x.device}")
        x = x.to(self.input_dtype).contiguous()
        if not self.context.set_input_shape(self.input_name, shape):
            raise ValueError(f"TensorRT refused input shape {format_shape(shape)} (profile {self.profile.describe()})")
        out_shape = _dims(self.context.get_tensor_shape(self.output_name))
        out = torch.empty(out_shape, dtype=self.output_dtype, device=self.device)
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT execution failed for input {format_shape(shape)} ({self.path})")
        return out

    def describe(self) -> str:
        return (
            f"{self.path.name}: {self.sidecar.runtime.value} {self.sidecar.runtime_version}, "
            f"{self.sidecar.precision.value}, "
            f"profile {self.profile.describe()}, device memory {self.device_memory_bytes / 2**20:.1f} MiB"
        )


class TensorRTRunner(RunnerBase):
    """A built engine as a ``Runner``: numpy in, numpy out (the engine's I/O dtype converted on the GPU)."""

    def __init__(self, engine: Path, *, plugin: Path | None = None, device: int = 0) -> None:
        self.engine = EngineRunner(engine, plugin=plugin, device=device)
        self.facts = ModelFacts.from_sidecar(self.engine.sidecar, source=str(engine))

    @property
    def precision(self) -> Precision:
        return self.engine.sidecar.precision

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        y = self.engine(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.engine.device))
        torch.cuda.synchronize(self.engine.device)
        return self.checked(batch, y.float().cpu().numpy())

    def describe(self) -> str:
        return self.engine.describe()
