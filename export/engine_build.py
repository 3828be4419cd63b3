"""Build a TensorRT engine from the exported ONNX: the library behind `python export/build_engine.py`.

Order of work: check inputs and machine (no TensorRT object is created before that), name the
engine from the options, parse (the plugin must have replaced every ESCWindowAttention node),
configure from `EngineOptions`, build with a progress bar, then write engine, timing cache and
sidecar, each atomically. Any failure leaves no engine file behind.

Plugin dispatch in TensorRT's ONNX parser: from 10.7 a registered plugin may replace a model-local
function of the same name; in the newest parsers that happens when the node has a `plugin_namespace`
attribute (the exporter writes one) or with OnnxParserFlag.ENABLE_PLUGIN_OVERRIDE (10.15+), which
is set where it exists. `check_plugin_layers` verifies the outcome instead of trusting any of this.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from export.engine_env import MissingDependencyError, require_cuda_gpu, require_tensorrt
from export.engine_files import sha256_file
from export.engine_options import (
    EngineOptions,
    Precision,
    build_log_path,
    cache_key,
    engine_path,
    identity_hashes,
)
from export.engine_plugin import (
    check_plugin_layers,
    esc_node_names,
    load_plugin_library,
    plugin_layer_names,
    require_plugin_file,
)
from export.engine_precision import NetworkTyping, network_typing, prepare_onnx
from export.engine_sidecar import build_sidecar, write_sidecar
from export.files import atomic_write_bytes

if TYPE_CHECKING:
    import tensorrt as trt

    from export.engine_trt_callbacks import FileLogger


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


def check_inputs(options: EngineOptions) -> None:
    """The files the build reads; cheap, and done before any TensorRT or GPU check."""
    if not options.onnx.is_file():
        raise MissingDependencyError(
            f"ONNX file {options.onnx} not found: export it with `python export/to_onnx.py`, or pass --onnx PATH"
        )
    if options.plugin is not None:
        require_plugin_file(options.plugin)


def build_engine(options: EngineOptions, *, progress: bool = True) -> BuildResult:
    """Build, write engine + sidecar + timing cache; MissingDependencyError / BuildError otherwise."""
    check_inputs(options)
    version, version_text = require_tensorrt()
    gpu = require_cuda_gpu()
    identities = identity_hashes(options)
    onnx_sha = identities["onnx"]
    assert onnx_sha is not None  # the onnx field is a Path, never None
    key = cache_key(options.settings(), identities, version_text, gpu.name)
    engine = engine_path(options, onnx_sha, key, version_text, gpu.name)
    onnx_path = prepare_onnx(options, version)
    typing = network_typing(version.major)
    if options.plugin is not None:
        load_plugin_library(options.plugin)

    from export.engine_trt_callbacks import FileLogger

    logger = FileLogger(build_log_path(engine))
    start = time.perf_counter()
    try:
        plan, plugin_layers, fp32_layers = _build_plan(options, onnx_path, typing, logger, progress=progress)
    finally:
        logger.close()
    atomic_write_bytes(engine, plan)
    content = build_sidecar(
        options,
        engine=engine,
        tensorrt_version=version_text,
        gpu=gpu,
        network_typing=typing.value,
        identities=identities,
        key=key,
        built_onnx=onnx_path,
        built_onnx_sha256=sha256_file(onnx_path),
        plugin_layers=plugin_layers,
    )
    sidecar = write_sidecar(engine, content)
    return BuildResult(
        engine=engine,
        sidecar=sidecar,
        log=logger.path,
        onnx=onnx_path,
        plugin_layers=tuple(plugin_layers),
        fp32_layers=tuple(fp32_layers),
        seconds=time.perf_counter() - start,
    )


def _build_plan(
    options: EngineOptions, onnx_path: Path, typing: NetworkTyping, logger: FileLogger, *, progress: bool
) -> tuple[bytes, list[str], list[str]]:
    import tensorrt as trt

    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(typing))
    _parse(network, onnx_path, logger, with_plugin=options.plugin is not None)
    plugin_layers = plugin_layer_names(network)
    check_plugin_layers(esc_node_names(onnx_path), plugin_layers, options.plugin)

    config = builder.create_builder_config()
    fp32_layers: list[str] = []
    if options.precision is Precision.FP16 and typing is NetworkTyping.WEAK:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        fp32_layers = pin_fp32_layers(network)
    if options.workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer names in the inspector's JSON
    _add_profile(builder, config, options)
    monitor = None
    if progress:
        from export.engine_trt_callbacks import TqdmProgressMonitor

        monitor = TqdmProgressMonitor()
        config.progress_monitor = monitor
    if options.timing_cache is not None:
        _load_timing_cache(config, options.timing_cache)

    try:
        plan = builder.build_serialized_network(network, config)
    finally:
        if monitor is not None:
            monitor.close()
    if plan is None:
        raise BuildError(f"TensorRT could not build {onnx_path}; see the build log {logger.path}")
    if options.timing_cache is not None:
        atomic_write_bytes(options.timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(plan), plugin_layers, fp32_layers


def _network_flags(typing: NetworkTyping) -> int:
    import tensorrt as trt

    if typing is NetworkTyping.WEAK:
        return 0
    # Required for strong typing on 10.x; accepted and ignored on 11.x, where every network is strongly typed.
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def _parse(network: trt.INetworkDefinition, onnx_path: Path, logger: FileLogger, *, with_plugin: bool) -> None:
    import tensorrt as trt

    parser = trt.OnnxParser(network, logger)
    # OnnxParserFlag.ENABLE_PLUGIN_OVERRIDE exists from TensorRT 10.15; the 10.13 stubs do not list it.
    override = getattr(trt.OnnxParserFlag, "ENABLE_PLUGIN_OVERRIDE", None)
    if with_plugin and override is not None:
        parser.set_flag(override)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        first = errors[0].replace("\n", " ") if errors else "no error reported"
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise BuildError(f"TensorRT could not parse {onnx_path}: {first}{more}; see the build log {logger.path}")


def pin_fp32_layers(network: trt.INetworkDefinition) -> list[str]:
    """Normalization and softmax layers compute and output in fp32 (10.x weak typing only)."""
    import tensorrt as trt

    pinned: list[str] = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in (trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX):
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            pinned.append(layer.name)
    return pinned


def _add_profile(builder: trt.Builder, config: trt.IBuilderConfig, options: EngineOptions) -> None:
    import tensorrt as trt

    profile = builder.create_optimization_profile()
    shapes = options.profile
    dims = [trt.Dims(list(shape)) for shape in (shapes.min, shapes.opt, shapes.max)]
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
        f"{len(result.plugin_layers)} plugin layers, {len(result.fp32_layers)} layers pinned to fp32); "
        f"sidecar {result.sidecar}"
    )
