"""Build a TensorRT engine from the exported ONNX: the library behind `python export/build_engine.py`.

Order of work: check inputs (files, the model's facts in the ONNX, the profile against the model's
minimum side), pick the runtime and the target (a GPU for TensorRT; compute capabilities for TensorRT
for RTX, which builds ahead of time without one), name the engine from the options, parse (the plugin
must have replaced every ESCWindowAttention node), configure from `EngineOptions`, build with a
progress bar, then write engine, timing cache and sidecar, each atomically. Any failure leaves no
engine or sidecar behind.

Plugin dispatch in TensorRT's ONNX parser: from 10.7 a registered plugin may replace a model-local
function of the same name; in the newest parsers that happens when the node has a `plugin_namespace`
attribute (the exporter writes one) or with OnnxParserFlag.ENABLE_PLUGIN_OVERRIDE (10.15+, 11.x, RTX),
which is set where the runtime has it. `check_plugin_layers` verifies the outcome instead of trusting
any of this.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from esc.config import ESCConfig
from esc_deploy.common.files import atomic_write_bytes, sha256_file
from esc_deploy.export.onnx_graph.graph_file import read_graph
from esc_deploy.export.onnx_graph.metadata import read_model_config
from esc_deploy.export.trt.attention_path import AttentionChoice, check_attention_types, choose_attention
from esc_deploy.export.trt.attention_report import AttentionBlock, attention_blocks, unfused_warning
from esc_deploy.export.trt.env import (
    RTX_DEFAULT_TARGETS,
    MissingDependencyError,
    TrtRuntime,
    local_gpu,
    require_cuda_gpu,
    require_runtime,
)
from esc_deploy.export.trt.fp16 import NetworkTyping, network_typing, prepare_onnx
from esc_deploy.export.trt.options import (
    EngineOptions,
    Precision,
    build_log_path,
    cache_key,
    engine_path,
    identity_hashes,
    sidecar_path,
)
from esc_deploy.export.trt.plugin import (
    check_plugin_layers,
    esc_node_names,
    load_plugin_library,
    plugin_layer_names,
)
from esc_deploy.export.trt.sidecar import BuildTarget, EngineSidecar, FileRecord, PluginRecord

if TYPE_CHECKING:
    import tensorrt as trt


class BuildError(RuntimeError):
    """TensorRT refused the network or the build; the message names the build log."""


@dataclass(frozen=True)
class BuildResult:
    engine: Path
    sidecar: Path
    log: Path
    onnx: Path
    plugin_layers: tuple[str, ...]
    fp32_layers: tuple[str, ...]
    seconds: float
    runtime: TrtRuntime
    target: BuildTarget
    attention: AttentionChoice
    attention_blocks: tuple[AttentionBlock, ...]
    fp16_reused: bool = False  # the fp16 ONNX came from an earlier conversion of the same file and options

    @property
    def unfused_warning(self) -> str | None:
        return unfused_warning(self.attention_blocks)


def check_inputs(options: EngineOptions) -> ESCConfig:
    """The files the build reads and the model's facts; cheap, and done before any TensorRT or GPU check."""
    if not options.onnx.is_file():
        raise MissingDependencyError(f"ONNX file {options.onnx} not found: export it with `python export/to_onnx.py`")
    model = read_model_config(options.onnx)  # a corrupt file is reported before a missing plugin
    check_onnx_file(options.onnx)
    low = min(options.profile.min[2:])
    if low < model.min_side:
        raise ValueError(
            f"profile minimum side {low} is below the model's minimum input side {model.min_side} "
            f"(window {model.window_size}: reflect padding needs pad < side); raise the profile's minimum shape"
        )
    return model


def check_onnx_file(path: Path) -> None:
    """onnx.checker on the graph already read (by path from 2 GiB: the proto's limit); ValueError, one line,
    for an invalid graph."""
    import onnx

    graph = read_graph(path)
    try:
        onnx.checker.check_model(graph if graph.ByteSize() < onnx.checker.MAXIMUM_PROTOBUF else str(path))
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path} is not a valid ONNX model: {first}") from None


def resolve_target(runtime: TrtRuntime, requested: tuple[str, ...] | None) -> BuildTarget:
    """TensorRT: the local GPU (required). TensorRT for RTX: the requested compute capabilities, else the
    local GPU's, else RTX_DEFAULT_TARGETS; no GPU needed."""
    if not runtime.builds_ahead_of_time:
        if requested is not None:
            raise ValueError(
                f"compute capabilities are a TensorRT for RTX setting; {runtime.label} builds for the GPU it runs on"
            )
        return BuildTarget(gpu=require_cuda_gpu(), compute_capabilities=())
    supported = runtime.target_compute_capabilities
    if requested is None:
        gpu = local_gpu()
        here = None if gpu is None else gpu.compute_capability_text
        requested = (here,) if here in supported else RTX_DEFAULT_TARGETS
    unknown = [cc for cc in requested if cc not in supported]
    if unknown:
        raise ValueError(
            f"compute capability {', '.join(unknown)} is not a target of {runtime.label}; "
            f"expected some of {', '.join(supported)}"
        )
    return BuildTarget(gpu=None, compute_capabilities=tuple(dict.fromkeys(requested)))


@dataclass(frozen=True)
class PlannedEngine:
    """Where a build writes its engine, and the hashes that name it."""

    path: Path
    cache_key: str
    identities: dict[str, str | None]
    onnx_sha256: str


def plan_engine(options: EngineOptions, runtime: TrtRuntime, target: BuildTarget) -> PlannedEngine:
    """The engine path of a build with these options on this runtime and target (also what --print-trtexec prints)."""
    identities = identity_hashes(options)
    key = cache_key(options.settings(), identities, f"{runtime.flavour.value} {runtime.version_text}", target.slug)
    onnx_sha = identities["onnx"]
    assert onnx_sha is not None  # the onnx field is a Path, never None
    path = engine_path(options, onnx_sha, key, runtime.tag, target.slug)
    return PlannedEngine(path, key, identities, onnx_sha)


def build_engine(
    options: EngineOptions, *, progress: bool = True, say: Callable[[str], None] | None = None
) -> BuildResult:
    """Build, write engine + sidecar + timing cache; MissingDependencyError / BuildError / ValueError otherwise.

    ``say``: where the one-line notes go (which attention path and why), None for nowhere."""
    model = check_inputs(options)
    choice = choose_attention(options)
    options = choice.effective(options)
    runtime = require_runtime(options.runtime)
    target = resolve_target(runtime, options.compute_capabilities)
    planned = plan_engine(options, runtime, target)
    identities, key, engine = planned.identities, planned.cache_key, planned.path
    onnx_sha = planned.onnx_sha256
    trt_module = runtime.module()
    runtime.prepare_process()
    if options.plugin is not None:  # its major is checked before it is loaded, and before any file is written
        load_plugin_library(options.plugin, runtime)
    typing = network_typing(runtime)
    source = options.onnx
    if choice.path == "tensorrt" and choice.plugin_nodes:
        from esc_deploy.export.onnx_graph.standard_attention import standard_attention_path, write_standard_attention

        source = write_standard_attention(options.onnx, standard_attention_path(options.onnx))
    build_options = dataclasses.replace(options, onnx=source)
    onnx_path, fp16_reused = prepare_onnx(build_options, typing, progress=progress)
    if typing is NetworkTyping.STRONG or options.precision is Precision.FP32:  # 10.x fp16 types Attention itself
        check_attention_types(onnx_path, runtime.label)
    if say is not None:  # once everything the build needs is known to be there: a failure stays one line
        say(choice.line())

    from esc_deploy.export.trt.callbacks import logger_for

    logger = logger_for(trt_module, build_log_path(engine), verbose=True)
    start = time.perf_counter()
    try:
        plan, plugin_layers, fp32_layers = _build_plan(
            trt_module, runtime, build_options, onnx_path, typing, target, logger, progress=progress
        )
    finally:
        logger.close()
    seconds = time.perf_counter() - start
    blocks = attention_blocks(onnx_path, logger.path)
    from esc_deploy.export.onnx_graph.fp16 import fp16_cost

    sidecar = EngineSidecar(
        engine=engine.name,
        cache_key=key,
        runtime=runtime.flavour,
        runtime_version=runtime.version_text,
        target=target,
        network_typing=typing.value,
        precision=options.precision,
        profile=options.profile,
        input_name=options.input_name,
        output_name=options.output_name,
        workspace_gb=options.workspace_gb,
        model=model,
        onnx=FileRecord(str(options.onnx.resolve()), onnx_sha),
        built_onnx=FileRecord(str(onnx_path.resolve()), sha256_file(onnx_path)),
        plugin=_plugin_record(options.plugin, identities.get("plugin")),
        plugin_layers=tuple(plugin_layers),
        attention=choice.path,
        attention_blocks=blocks,
        fused_attention_blocks=sum(b.fused for b in blocks),
        fp16=fp16_cost(onnx_path),
        built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        build_seconds=round(seconds, 2),
    )
    # The engine file is the last thing written: a reader that finds it finds its sidecar too.
    written = sidecar.write(engine)
    try:
        atomic_write_bytes(engine, plan)
    except BaseException:
        sidecar_path(engine).unlink(missing_ok=True)
        raise
    return BuildResult(
        engine=engine,
        sidecar=written,
        log=logger.path,
        onnx=onnx_path,
        plugin_layers=tuple(plugin_layers),
        fp32_layers=tuple(fp32_layers),
        seconds=seconds,
        runtime=runtime,
        target=target,
        attention=choice,
        attention_blocks=blocks,
        fp16_reused=fp16_reused,
    )


def _plugin_record(path: Path | None, sha256: str | None) -> PluginRecord | None:
    if path is None or sha256 is None:
        return None
    return PluginRecord(path=str(path.resolve()), sha256=sha256)


def _build_plan(
    trt_module: ModuleType,
    runtime: TrtRuntime,
    options: EngineOptions,
    onnx_path: Path,
    typing: NetworkTyping,
    target: BuildTarget,
    logger: Any,
    *,
    progress: bool,
) -> tuple[bytes, list[str], list[str]]:
    builder: trt.Builder = trt_module.Builder(logger)
    # Strong typing needs the flag on 10.x; 11.x and TensorRT for RTX accept it (it is their only mode).
    strong = 1 << int(trt_module.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    flags = strong if typing is NetworkTyping.STRONG else 0
    network = builder.create_network(flags)
    _parse(trt_module, runtime, network, onnx_path, logger, with_plugin=options.plugin is not None)
    plugin_layers = plugin_layer_names(trt_module, network)
    check_plugin_layers(esc_node_names(onnx_path), plugin_layers, options.plugin)

    config: trt.IBuilderConfig = builder.create_builder_config()
    fp32_layers: list[str] = []
    if options.precision is Precision.FP16 and typing is NetworkTyping.WEAK:
        config.set_flag(trt_module.BuilderFlag.FP16)
        config.set_flag(trt_module.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        from esc_deploy.export.trt.fp16 import calibrated_fp32_nodes

        fp32_layers = pin_fp32_layers(trt_module, network, calibrated_fp32_nodes(options))
    if target.compute_capabilities:
        _set_compute_capabilities(trt_module, config, target.compute_capabilities)
    if options.workspace_bytes is not None:
        config.set_memory_pool_limit(trt_module.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    # Layer names and tensor types in the inspector's JSON and in the build log's layer information.
    config.profiling_verbosity = trt_module.ProfilingVerbosity.DETAILED
    _add_profile(trt_module, builder, config, options)
    monitor = None
    if progress:
        from esc_deploy.export.trt.callbacks import progress_monitor_for

        monitor = progress_monitor_for(trt_module)
        config.progress_monitor = monitor
    if options.timing_cache is not None:
        _load_timing_cache(config, options.timing_cache)

    try:
        plan = builder.build_serialized_network(network, config)
    finally:
        if monitor is not None:
            monitor.close()
    if plan is None:
        raise BuildError(f"{runtime.label} could not build {onnx_path}; see the build log {logger.path}")
    if options.timing_cache is not None:
        atomic_write_bytes(options.timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(plan), plugin_layers, fp32_layers


def _set_compute_capabilities(trt_module: ModuleType, config: Any, capabilities: tuple[str, ...]) -> None:
    """TensorRT for RTX's ahead-of-time targets: '8.6' -> ComputeCapability.SM86."""
    config.num_compute_capabilities = len(capabilities)
    for index, cc in enumerate(capabilities):
        config.set_compute_capability(getattr(trt_module.ComputeCapability, "SM" + cc.replace(".", "")), index)


def _parse(
    trt_module: ModuleType,
    runtime: TrtRuntime,
    network: trt.INetworkDefinition,
    onnx_path: Path,
    logger: Any,
    *,
    with_plugin: bool,
) -> None:
    parser: trt.OnnxParser = trt_module.OnnxParser(network, logger)
    if with_plugin and runtime.has_plugin_override_flag:
        parser.set_flag(trt_module.OnnxParserFlag.ENABLE_PLUGIN_OVERRIDE)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        first = errors[0].replace("\n", " ") if errors else "no error reported"
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise BuildError(f"{runtime.label} could not parse {onnx_path}: {first}{more}; see the build log {logger.path}")


def layer_node(layer_name: str, nodes: set[str]) -> str | None:
    """The ONNX node a parsed layer came from: its name, or a prefix the parser extended with '_...'."""
    if layer_name in nodes:
        return layer_name
    cut = layer_name
    while "_" in cut:
        cut = cut.rsplit("_", 1)[0]
        if cut in nodes:
            return cut
    return None


def pin_fp32_layers(
    trt_module: ModuleType,
    network: trt.INetworkDefinition,
    fp32_nodes: set[str] = frozenset(),  # type: ignore[assignment]
) -> list[str]:
    """Normalization and softmax layers, and the layers of ``fp32_nodes`` (the calibrated rule's ONNX
    nodes), compute and output in fp32 (10.x weak typing only)."""
    pinned: list[str] = []
    kinds = (trt_module.LayerType.NORMALIZATION, trt_module.LayerType.SOFTMAX)
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in kinds or layer_node(layer.name, fp32_nodes) is not None:
            layer.precision = trt_module.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt_module.float32)
            pinned.append(layer.name)
    return pinned


def _add_profile(
    trt_module: ModuleType, builder: trt.Builder, config: trt.IBuilderConfig, options: EngineOptions
) -> None:
    profile = builder.create_optimization_profile()
    shapes = options.profile
    dims = [trt_module.Dims(list(shape)) for shape in (shapes.min, shapes.opt, shapes.max)]
    profile.set_shape(options.input_name, *dims)
    config.add_optimization_profile(profile)


def _load_timing_cache(config: trt.IBuilderConfig, path: Path) -> None:
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        raise BuildError(f"timing cache {path} does not match this TensorRT/GPU; delete it or pass another path")


def describe(result: BuildResult) -> str:
    return (
        f"wrote {result.engine} ({result.engine.stat().st_size / 2**20:.1f} MiB, {result.seconds:.0f} s, "
        f"{result.runtime.label}, for {result.target.describe()}, {len(result.plugin_layers)} plugin layers, "
        f"{len(result.fp32_layers)} layers pinned to fp32, {sum(b.fused for b in result.attention_blocks)} of "
        f"{len(result.attention_blocks)} attention blocks fused{_fp16_note(result)}); sidecar {result.sidecar}"
    )


def _fp16_note(result: BuildResult) -> str:
    if result.onnx.resolve() == result.engine.resolve() or not result.onnx.name.endswith(".fp16.onnx"):
        return ""
    return f", fp16 ONNX {'reused from' if result.fp16_reused else 'written to'} {result.onnx}"
