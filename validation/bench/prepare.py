"""One benchmark case made runnable per backend: the call, and the step that waits for its output.

A run is ``ready(fn())``: CUDA launches (eager torch, TensorRT's enqueue) return before their kernels
finish, so every backend names how its output becomes ready, and the timer times both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from esc_deploy.export.precision import Precision

if TYPE_CHECKING:
    import torch

    from esc.models import ESCBase
    from esc_deploy.validation.accuracy.fp16 import Fp16Context
    from esc_deploy.validation.backends import Graph
    from esc_deploy.validation.bench.suite import BenchmarkOptions

Device = Literal["cuda", "cpu"]
Fn = Callable[[], Any]
Ready = Callable[[Any], None]  # given fn's output, returns once that output is ready


def host_ready(_output: Any) -> None:
    """For calls that return finished outputs: eager torch on the CPU, ONNX Runtime (numpy outputs)."""


def cuda_ready(device: torch.device) -> Ready:
    """Waits for every stream of ``device``: its launches (eager torch, TensorRT's enqueue) are asynchronous."""
    import torch

    def ready(_output: Any) -> None:
        torch.cuda.synchronize(device)

    return ready


@dataclass
class Prepared:
    fn: Fn
    ready: Ready  # required, so that no backend is timed without its readiness step
    memory_kind: str
    detail: str
    fixed_memory_mib: float | None = None  # TensorRT: the engine's device memory


_FP16_CONTEXTS: dict[tuple[str, str], Fp16Context] = {}


def fp16_context(model: ESCBase, calibration: str) -> Fp16Context:
    """The fp16 rule's calibration of ``model``, made once per model and choice, as in a parity run: the
    plugin graph's verified plan decides the modules every fp16 case keeps in float32 (eager and native too)."""
    from esc_deploy.export.onnx_graph.calibration_set import calibration_for
    from esc_deploy.validation.accuracy.fp16 import Fp16Context
    from esc_deploy.validation.backends import export_graphs, model_fingerprint

    key = (model_fingerprint(model), calibration)
    if key not in _FP16_CONTEXTS:
        calibration_set = calibration_for(calibration, model.config)
        graphs = {} if calibration_set is None else export_graphs(model, ["plugin"])
        _FP16_CONTEXTS[key] = Fp16Context(model, calibration_set, calibration, graphs)
    return _FP16_CONTEXTS[key]


def prepare_eager(
    model: ESCBase, backend: str, dtype: Precision, device: Device, shape: tuple[int, ...], calibration: str
) -> Prepared:
    """Times the module on device tensors, not a runtime runner: a runner's host copies would be timed too."""
    import copy

    import torch

    if dtype == "fp16":
        net = fp16_context(model, calibration).mixed_model()[0].to(device).eval()
    else:
        net = copy.deepcopy(model).to(device, torch.float32).eval()
    net.set_attention(backend.removeprefix("eager-"))
    x = torch.rand(shape, device=device)  # float32 pixels: the mixed fp16 model rounds where it reads them

    def fn() -> Any:
        with torch.inference_mode():
            return net(x)

    ready = cuda_ready(x.device) if device == "cuda" else host_ready
    kind = "torch.cuda.max_memory_allocated" if device == "cuda" else ""
    detail = f"eager torch {torch.__version__}, attention {backend.removeprefix('eager-')}"
    detail += f", threads {torch.get_num_threads()}" if device == "cpu" else ""
    return Prepared(fn, ready, kind, detail)


@dataclass(frozen=True)
class OrtGraph:
    """The graph an ONNX Runtime backend runs: the attention's form and the export's opset."""

    attention: Graph
    opset: int | None = None  # None: the exporter's default (18)

    @property
    def key(self) -> str:
        """Names this graph in caches shared with parity (fp16 plans): 'native', 'native-opset23'."""
        return self.attention if self.opset is None else f"{self.attention}-opset{self.opset}"

    @property
    def label(self) -> str:
        return f"{self.attention} graph" + (f", opset {self.opset}" if self.opset is not None else "")


# backend -> its graph; opset 23 is the first with a standard Attention node (exporter.ATTENTION_OP_OPSET).
ORT_GRAPHS: dict[str, OrtGraph] = {
    "onnxruntime": OrtGraph("native"),
    "onnxruntime-plugin": OrtGraph("plugin"),  # the default export: the plugin node's function body
    "onnxruntime-opset23": OrtGraph("native", 23),
}


def prepare_onnxruntime(
    model: ESCBase,
    dtype: Precision,
    device: Device,
    shape: tuple[int, ...],
    calibration: str,
    *,
    graph: OrtGraph = ORT_GRAPHS["onnxruntime"],
    threads: int | None = None,
) -> Prepared:
    import numpy as np

    from esc_deploy.runtime.facts import ModelFacts
    from esc_deploy.runtime.ort_runner import OrtRunner
    from esc_deploy.validation.backends import export_graphs

    proto = export_graphs(model, [graph.attention], opset=graph.opset)[graph.attention]
    if dtype == "fp16":
        proto = fp16_context(model, calibration).mixed_graph(graph.key, proto)
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    # timed with its arena: the arena's reuse is part of its speed
    facts = ModelFacts.from_model(model, source=graph.label)
    runner = OrtRunner(proto, providers=providers, arena=True, threads=threads, facts=facts)
    x = np.random.default_rng(0).random(shape, dtype=np.float32)

    def fn() -> Any:
        # Synchronous, the CUDA provider too: the runner returns numpy arrays, copied to the host when done.
        return runner(x)

    what = graph.label + (", mixed fp16" if dtype == "fp16" else "")
    threads_text = f"intra-op threads {'default' if threads is None else threads}"
    detail = f"{runner.describe()}, {what}, {threads_text}"
    return Prepared(fn, host_ready, "", detail)


def prepare_tensorrt(
    model: ESCBase, dtype: Precision, shape: tuple[int, ...], options: BenchmarkOptions, *, attention: str = "plugin"
) -> Prepared:
    """An engine built from the plugin export at this static shape; ``attention`` 'plugin' (the plugin
    library) or 'tensorrt' (no plugin: TensorRT's own fused attention kernel)."""
    import torch

    from esc_deploy.export.shape_profile import ShapeProfile
    from esc_deploy.export.trt.from_graph import build_engine_from_graph
    from esc_deploy.runtime.engine import EngineRunner
    from esc_deploy.validation.backends import export_graphs

    b, c, h, w = shape
    static = (b, c, h, w)
    built = build_engine_from_graph(
        export_graphs(model, ["plugin"])["plugin"],
        onnx_path=options.work_dir / f"benchmark_x{model.config.scale}.onnx",
        engine=options.work_dir / f"benchmark_x{model.config.scale}_{dtype}_{h}x{w}_{attention}.engine",
        profile=ShapeProfile(static, static, static),
        precision=dtype,
        plugin=options.plugin if attention == "plugin" else None,
        calibration=options.calibration,
        attention=attention,
    )
    plugin = options.plugin if attention == "plugin" else None
    # --device cuda is the current CUDA device: the one the engine was built on and measure()'s events use.
    runner = EngineRunner(built.engine, plugin=plugin, device=torch.cuda.current_device())
    x = torch.rand(shape, device=runner.device)

    def fn() -> Any:
        return runner(x)  # enqueued on the current stream; returns before the engine has run

    memory = runner.device_memory_bytes / 2**20
    kind = "TensorRT engine device memory (one context)"
    return Prepared(fn, cuda_ready(runner.device), kind, runner.describe(), fixed_memory_mib=memory)
