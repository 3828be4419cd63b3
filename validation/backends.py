"""Runners: each backend turns the same inputs into outputs (savable as .npz) and judges nothing.

Backends (the reference is ``torch-fp32``, the eager model with the plain-math attention)::

    torch-fp32, torch-fp16                      eager PyTorch
    onnxruntime-plugin, onnxruntime-native      ONNX Runtime, float32 graph with the attention as the
                                                plugin node (run through its model-local function) or
                                                as standard ops
    onnxruntime-fp16-plugin/-native             the same graphs converted to mixed fp16 (to_mixed_fp16)
    tensorrt                                    the plugin engine through esc_deploy.serving.engine_runner.EngineRunner
    tensorrt-fused                              the plugin-free engine (build_engine.py --attention tensorrt:
                                                TensorRT's own fused window attention), the same way

Each ESC graph is exported once per process (``export_graphs``), keeping the exporter's name scopes for
drift localisation; the fp16 graphs are derived from the fp32 ones. (Two exports in two processes at
once were slower than one after the other on a 2-core machine: 74 s against 59 s for ESC-light x4.)
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from esc_deploy.common.files import atomic_output
from esc_deploy.export.precision import Precision

if TYPE_CHECKING:
    import onnx

    from esc.models import ESCBase
    from esc_deploy.validation.accuracy.fp16 import Fp16Context
    from esc_deploy.validation.images import InputImage

BackendKind = Literal["torch", "onnxruntime", "tensorrt"]
Graph = Literal["plugin", "native"]
GRAPHS: tuple[Graph, ...] = ("plugin", "native")


@dataclass(frozen=True)
class Backend:
    name: str
    kind: BackendKind
    precision: Precision
    graph: Graph | None = None


REFERENCE = "torch-fp32"
BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("torch-fp32", "torch", Precision.FP32),
        Backend("torch-fp16", "torch", Precision.FP16),
        Backend("onnxruntime-plugin", "onnxruntime", Precision.FP32, "plugin"),
        Backend("onnxruntime-native", "onnxruntime", Precision.FP32, "native"),
        Backend("onnxruntime-fp16-plugin", "onnxruntime", Precision.FP16, "plugin"),
        Backend("onnxruntime-fp16-native", "onnxruntime", Precision.FP16, "native"),
        # Precision is the engine's (ParityOptions.trt_precision, or the given engine's sidecar).
        Backend("tensorrt", "tensorrt", Precision.FP16, "plugin"),
        Backend("tensorrt-fused", "tensorrt", Precision.FP16, "plugin"),  # built from the plugin export, no plugin
    )
}
# Names that stand for several backends in --backends.
GROUPS: dict[str, tuple[str, ...]] = {
    "all": tuple(BACKENDS),
    "torch": ("torch-fp32", "torch-fp16"),
    "onnxruntime": ("onnxruntime-plugin", "onnxruntime-native"),
    "onnxruntime-fp16": ("onnxruntime-fp16-plugin", "onnxruntime-fp16-native"),
}


def parse_backends(text: str) -> tuple[str, ...]:
    """'onnxruntime,torch-fp16' -> the backends in table order, the reference first; ValueError on typos."""
    chosen: set[str] = {REFERENCE}
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if item in GROUPS:
            chosen.update(GROUPS[item])
        elif item in BACKENDS:
            chosen.add(item)
        else:
            known = ", ".join([*BACKENDS, *GROUPS])
            raise ValueError(f"unknown backend {item!r}; expected a comma-separated list of: {known}")
    return tuple(name for name in BACKENDS if name in chosen)


# ---------------------------------------------------------------------------------------------- outputs


@dataclass
class RunOutputs:
    """What one runner produced: an output per input image, and how long each took."""

    backend: str
    outputs: dict[str, np.ndarray]
    seconds: dict[str, float] = field(default_factory=dict)
    description: str = ""

    def save(self, path: str | os.PathLike[str]) -> Path:
        """One .npz (written atomically): an array per image plus a JSON header."""
        header = json.dumps({"backend": self.backend, "seconds": self.seconds, "description": self.description})
        with atomic_output(path) as tmp, tmp.open("wb") as f:
            arrays: dict[str, Any] = {"__header__": np.array(header), **self.outputs}
            np.savez(f, **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunOutputs:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["__header__"]))
            outputs = {k: data[k] for k in data.files if k != "__header__"}
        return cls(header["backend"], outputs, header["seconds"], header["description"])


class Runner(Protocol):
    name: str

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(1, 3, H, W) float32 -> (1, 3, sH, sW) float32."""
        ...

    def describe(self) -> str: ...


def run_inputs(runner: Runner, inputs: Sequence[InputImage], *, progress: bool = False) -> RunOutputs:
    """Run every input through ``runner`` (the outputs are float32 numpy arrays)."""
    from tqdm import tqdm

    outputs, seconds = {}, {}
    for image in tqdm(inputs, desc=runner.name, disable=not progress, leave=False):
        start = time.perf_counter()
        outputs[image.name] = np.asarray(runner(image.pixels), dtype=np.float32)
        seconds[image.name] = time.perf_counter() - start
    return RunOutputs(runner.name, outputs, seconds, runner.describe())


# ---------------------------------------------------------------------------------------------- runners


class TorchRunner:
    """The eager model (a copy) in float32 or float16 on ``device``."""

    def __init__(
        self,
        name: str,
        model: ESCBase,
        *,
        precision: Precision,
        device: str = "cpu",
        fp16: Fp16Context | None = None,
    ) -> None:
        """fp16 takes the model from ``fp16`` (validation/accuracy/fp16.py): the modules the calibrated
        rule keeps in float32 run in float32, as in the calibrated ONNX and engines."""
        import torch

        self.name = name
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.device = torch.device(device)
        self.fp32_modules: list[str] = []
        if precision == "fp16" and fp16 is not None:
            mixed, self.fp32_modules = fp16.mixed_model()
            self.model = mixed.eval().to(self.device)
        else:
            self.model = copy.deepcopy(model).eval().to(self.device, self.dtype)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            y = self.model(torch.from_numpy(x).to(self.device, self.dtype))
        return y.float().cpu().numpy()

    def describe(self) -> str:
        islands = f", {len(self.fp32_modules)} modules in float32 by the fp16 rule" if self.fp32_modules else ""
        return f"eager PyTorch, {self.dtype}, {self.device}, attention {self.model.attention}{islands}"


class OnnxRuntimeRunner:
    """One ONNX Runtime session on an in-memory ModelProto."""

    def __init__(
        self, name: str, proto: onnx.ModelProto, *, providers: Sequence[str] = ("CPUExecutionProvider",)
    ) -> None:
        from esc_deploy.export.onnx_graph.ort_session import ort_session

        self.name = name
        self.session = ort_session(proto, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input_name: x})[0])

    def describe(self) -> str:
        import onnxruntime as ort

        return f"ONNX Runtime {ort.__version__}, {', '.join(self.session.get_providers())}"


class TensorRTRunner:
    """A built engine through EngineRunner; numpy in, numpy out."""

    def __init__(self, name: str, engine: Path, *, plugin: Path | None = None) -> None:
        from esc_deploy.serving.engine_runner import EngineRunner

        self.name = name
        self.runner = EngineRunner(engine, plugin=plugin)

    @property
    def precision(self) -> Precision:
        return self.runner.sidecar.precision

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        y = self.runner(torch.from_numpy(x).to(self.runner.device))
        torch.cuda.synchronize(self.runner.device)
        return y.float().cpu().numpy()

    def describe(self) -> str:
        return self.runner.describe()


# ---------------------------------------------------------------------------------------------- skip rules


@functools.cache
def torch_cpu_half_works() -> bool:
    """Whether this torch runs float16 convolution, layer norm and softmax on the CPU (2.13 does)."""
    import torch
    import torch.nn.functional as F

    try:
        x = torch.rand(1, 4, 9, 9, dtype=torch.float16)
        y = F.conv2d(x, torch.rand(4, 4, 3, 3, dtype=torch.float16), padding=1)
        y = F.layer_norm(y.permute(0, 2, 3, 1), (4,)).softmax(-1)
        return bool(torch.isfinite(y).all())
    except RuntimeError:
        return False


def skip_reason(backend: Backend, *, device: str = "cpu") -> str | None:
    """Why ``backend`` cannot run on this machine, or None when it can."""
    import importlib.util

    if backend.kind == "torch":
        if backend.precision == "fp16" and device == "cpu" and not torch_cpu_half_works():
            return "needs CUDA (this torch has no float16 convolution on the CPU)"
        return None
    if backend.kind == "onnxruntime":
        return None if importlib.util.find_spec("onnxruntime") else "onnxruntime is not installed"
    from esc_deploy.export.trt.env import cannot_run_engines

    return cannot_run_engines()


# ---------------------------------------------------------------------------------------------- graphs

# (model fingerprint, graph, opset: None for the exporter's default) -> fp32 ModelProto, name scopes kept.
_GRAPH_CACHE: dict[tuple[str, str, int | None], onnx.ModelProto] = {}


def model_fingerprint(model: ESCBase) -> str:
    """sha256 over the config and every state tensor: the key of this process's export cache."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _export_bytes(model: ESCBase, graph: Graph, opset: int | None) -> bytes:
    """The fp32 graph with the exporter's metadata, serialised (a copy, so the cache is never aliased)."""
    from esc_deploy.export.onnx_graph.exporter import DEFAULT_OPSET, OnnxExportOptions, to_onnx_proto

    # Library code leaves global logging alone: the commands (parity.py, benchmark.py) quiet the exporter.
    options = OnnxExportOptions(attention=graph, opset=DEFAULT_OPSET if opset is None else opset)
    proto = to_onnx_proto(model, options, keep_metadata=True)
    return bytes(proto.SerializeToString())


def export_graphs(model: ESCBase, graphs: Sequence[Graph], *, opset: int | None = None) -> dict[str, onnx.ModelProto]:
    """The fp32 ModelProtos of ``graphs`` (at ``opset``, None: the exporter's default), exported once
    per process and model."""
    import onnx

    key = model_fingerprint(model)
    for g in dict.fromkeys(graphs):
        if (key, g, opset) not in _GRAPH_CACHE:
            _GRAPH_CACHE[key, g, opset] = onnx.load_from_string(_export_bytes(model, g, opset))
    return {g: _GRAPH_CACHE[key, g, opset] for g in graphs}


# ---------------------------------------------------------------------------------------------- TensorRT


def build_parity_engine(
    plugin_graph: onnx.ModelProto,
    inputs: Sequence[InputImage],
    *,
    precision: Precision,
    plugin: Path | None,
    work_dir: Path,
    calibration: str = "auto",
    log: Callable[[str], None] = print,
    attention: str = "plugin",
) -> Path:
    """Build an engine from the fp32 plugin graph whose profile covers every parity input; ``attention``
    'plugin' (needs ``plugin``) or 'tensorrt' (no plugin: TensorRT's own fused attention)."""
    from esc_deploy.export.shape_profile import ShapeProfile
    from esc_deploy.export.trt.build import describe
    from esc_deploy.export.trt.from_graph import build_engine_from_graph
    from esc_deploy.export.trt.plugin import require_plugin_file

    if attention == "plugin":
        if plugin is None:
            raise ValueError("the plugin engine needs a plugin library")
        require_plugin_file(plugin)
    else:
        plugin = None
    heights = [i.size[0] for i in inputs]
    widths = [i.size[1] for i in inputs]
    profile = ShapeProfile(
        min=(1, 3, min(heights), min(widths)),
        opt=(1, 3, max(heights), max(widths)),
        max=(1, 3, max(heights), max(widths)),
    )
    result = build_engine_from_graph(
        plugin_graph,
        onnx_path=work_dir / "parity_plugin.onnx",
        engine=work_dir / f"parity_{precision}_{attention}.engine",
        profile=profile,
        precision=precision,
        plugin=plugin,
        calibration=calibration,
        attention=attention,
    )
    log(f"built {describe(result)}")
    return result.engine
