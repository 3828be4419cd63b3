"""The ESCWindowAttention plugin on the TensorRT side: loading the library, proving the parser used it.

The ONNX node carries a function body (the plain math version) so that ONNX Runtime can run it.
When the plugin is not registered, TensorRT's parser silently imports that body instead; the build
then succeeds with a slower, different engine. `check_plugin_layers` turns that into an error.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from esc_deploy.export import plugin_contract
from esc_deploy.export.onnx_graph.graph_file import read_graph
from esc_deploy.export.trt.env import MissingDependencyError, TrtRuntime

if TYPE_CHECKING:
    import tensorrt as trt

BUILD_PLUGIN_HINT = "build it with `cmake -S engines/plugin -B build/plugin && cmake --build build/plugin`"


def plugin_id() -> str:
    ns = plugin_contract.PLUGIN_NAMESPACE
    return f"{plugin_contract.OP_TYPE} v{plugin_contract.PLUGIN_VERSION} (namespace {ns!r})"


def require_plugin_file(path: Path) -> None:
    if not path.is_file():
        raise MissingDependencyError(f"plugin library {path} not found: {BUILD_PLUGIN_HINT}")


# escPluginRuntime.cpp writes this marker into the library; it is read from the file before loading.
_BUILD_INFO = re.compile(rb"esc-trt-plugin tensorrt-headers-major=(\d+)\x00")


def plugin_headers_major(path: Path) -> int:
    """The TensorRT header major a plugin library was built with, read without loading it."""
    require_plugin_file(path)
    data = path.read_bytes()
    if not data.startswith(b"\x7fELF"):
        raise MissingDependencyError(f"plugin library {path} is not a shared library (no ELF header)")
    match = _BUILD_INFO.search(data)
    if match is None:
        raise MissingDependencyError(
            f"{path} is not an {plugin_contract.OP_TYPE} plugin library of this project (no build marker); "
            f"{BUILD_PLUGIN_HINT}"
        )
    return int(match[1])


def check_plugin_major(path: Path, runtime: TrtRuntime) -> None:
    """A library built with another TensorRT major crashes or is refused where this runtime loads it."""
    major = plugin_headers_major(path)
    if major != runtime.plugin_abi_major:
        raise MissingDependencyError(
            f"plugin library {path} was built with TensorRT {major}.x headers; {runtime.label} needs one built "
            f"with TensorRT {runtime.plugin_abi_major}.x headers (cmake -S engines/plugin -B build/plugin "
            f"-DTensorRT_INCLUDE_DIR=<TensorRT {runtime.plugin_abi_major}.x include folder>)"
        )


def load_plugin_library(path: Path, runtime: TrtRuntime) -> ctypes.CDLL:
    """Check the library's header major against the runtime, dlopen it with RTLD_GLOBAL (its static
    registration finds the runtime), then make sure the runtime's registry has the creator, through
    IPluginRegistry.load_library (the library's getCreators) where dlopen found no registry."""
    check_plugin_major(path, runtime)
    try:
        handle = ctypes.CDLL(str(path.resolve()), mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:
        raise MissingDependencyError(f"cannot load plugin library {path}: {exc}") from None
    registry = runtime.module().get_plugin_registry()
    if not _has_creator(registry):
        registry.load_library(str(path.resolve()))
    if not _has_creator(registry):
        raise MissingDependencyError(f"plugin library {path} loaded but registered no creator for {plugin_id()}")
    return handle


def _has_creator(registry: trt.IPluginRegistry) -> bool:
    creator = registry.get_creator(
        plugin_contract.OP_TYPE, plugin_contract.PLUGIN_VERSION, plugin_contract.PLUGIN_NAMESPACE
    )
    return creator is not None


def esc_node_names(onnx_path: Path) -> list[str]:
    """Names of the graph's ESCWindowAttention nodes ('' for an unnamed one), in graph order."""
    model = read_graph(onnx_path)
    return [
        node.name
        for node in model.graph.node
        if node.op_type == plugin_contract.OP_TYPE and node.domain == plugin_contract.DOMAIN
    ]


def unplugged_nodes(node_names: Sequence[str], plugin_layer_names: Sequence[str]) -> list[str]:
    """The nodes with no plugin layer: matched by name (the parser names a layer after its node),
    then by count for layers the parser renamed (unnamed or duplicate node names)."""
    layer_names = set(plugin_layer_names)
    unmatched = [name for name in node_names if name not in layer_names]
    spare_layers = len(plugin_layer_names) - (len(node_names) - len(unmatched))
    return unmatched[max(spare_layers, 0) :]


def plugin_layer_names(trt_module: ModuleType, network: trt.INetworkDefinition) -> list[str]:
    """Names of the network's plugin layers (V3, and V2 for completeness)."""
    kinds = {trt_module.LayerType.PLUGIN_V3, trt_module.LayerType.PLUGIN_V2}
    layers = (network.get_layer(i) for i in range(network.num_layers))
    return [layer.name for layer in layers if layer.type in kinds]


def check_plugin_layers(node_names: Sequence[str], layer_names: Sequence[str], plugin: Path | None) -> None:
    missing = unplugged_nodes(node_names, layer_names)
    if not missing:
        return
    shown = ", ".join(repr(n) for n in missing[:3]) + (", ..." if len(missing) > 3 else "")
    source = f"the plugin library {plugin}" if plugin is not None else "no plugin library"
    raise MissingDependencyError(
        f"{len(missing)} of {len(node_names)} {plugin_contract.OP_TYPE} nodes ({shown}) were built "
        f"from their ONNX function body instead of the plugin: {source} did not provide {plugin_id()} "
        "to TensorRT's parser"
    )
