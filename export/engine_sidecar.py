"""The JSON written next to every engine: how it was built, and the checks a runner makes against it.

An engine only runs with the TensorRT version that built it and with the plugin library whose
serialized fields it holds; the sidecar records both (plus GPU, precision, profile and the ONNX hash)
so that a mismatch is one clear error instead of a deserialization failure or silent wrong output.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from export import plugin_contract
from export.engine_env import GpuInfo
from export.engine_files import atomic_write_json
from export.engine_options import EngineOptions, sidecar_path

SIDECAR_FORMAT = 1


def plugin_record(path: Path | None, sha256: str | None) -> dict[str, str] | None:
    if path is None or sha256 is None:
        return None
    return {
        "path": str(path.resolve()),
        "sha256": sha256,
        "op_type": plugin_contract.OP_TYPE,
        "domain": plugin_contract.DOMAIN,
        "version": plugin_contract.PLUGIN_VERSION,
        "namespace": plugin_contract.PLUGIN_NAMESPACE,
    }


def build_sidecar(
    options: EngineOptions,
    *,
    engine: Path,
    tensorrt_version: str,
    gpu: GpuInfo,
    network_typing: str,
    identities: dict[str, str | None],
    key: str,
    built_onnx: Path,
    built_onnx_sha256: str,
    plugin_layers: Sequence[str],
) -> dict[str, Any]:
    """The sidecar's content; `options.settings()` brings every engine-changing option along."""
    onnx_sha = identities["onnx"]
    return {
        "format": SIDECAR_FORMAT,
        "engine": engine.name,
        "cache_key": key,
        "tensorrt_version": tensorrt_version,
        "gpu": {"name": gpu.name, "compute_capability": gpu.compute_capability_text},
        "network_typing": network_typing,
        **options.settings(),
        "onnx": {"path": str(options.onnx.resolve()), "sha256": onnx_sha},
        "built_onnx": {"path": str(built_onnx.resolve()), "sha256": built_onnx_sha256},
        "plugin": plugin_record(options.plugin, identities.get("plugin")),
        "plugin_layers": list(plugin_layers),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_sidecar(engine: Path, content: dict[str, Any]) -> Path:
    path = sidecar_path(engine)
    atomic_write_json(path, content)
    return path


def read_sidecar(engine: Path) -> dict[str, Any]:
    path = sidecar_path(engine)
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(
            f"no sidecar {path} next to the engine: build engines with `python export/build_engine.py`"
        ) from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"sidecar {path} is not valid JSON: {exc}") from None
    if not isinstance(content, dict) or content.get("format") != SIDECAR_FORMAT:
        found = content.get("format") if isinstance(content, dict) else type(content).__name__
        raise ValueError(f"sidecar {path}: expected format {SIDECAR_FORMAT}, found {found!r}")
    return content


def compatibility_problems(sidecar: dict[str, Any], *, tensorrt_version: str, plugin_sha256: str | None) -> list[str]:
    """Why this engine cannot run with the loaded TensorRT and plugin; empty when it can."""
    problems: list[str] = []
    built_with = sidecar.get("tensorrt_version")
    if built_with != tensorrt_version:
        problems.append(f"built with TensorRT {built_with}, TensorRT {tensorrt_version} is loaded")
    plugin = sidecar.get("plugin")
    if plugin is not None:
        if plugin.get("version") != plugin_contract.PLUGIN_VERSION:
            problems.append(
                f"built for plugin version {plugin.get('version')}, this code has {plugin_contract.PLUGIN_VERSION}"
            )
        if plugin_sha256 is None:
            problems.append(f"built with the plugin {plugin.get('path')}, no plugin library is loaded")
        elif plugin.get("sha256") != plugin_sha256:
            problems.append(
                f"built with plugin sha256 {str(plugin.get('sha256'))[:12]}, "
                f"the loaded library has {plugin_sha256[:12]}"
            )
    return problems
