"""Loads the plugin into a real TensorRT registry one way and prints what the registry then holds.

    python plugin_loader_probe.py MODULE MODE PLUGIN     (MODE: ctypes | registry | both | project)

Run in a fresh process per case (tests/engines/test_plugin_registry.py), since a process keeps what it
loaded. Prints one JSON line: {"creators": n ESCWindowAttention creators, "handle": load_library's result}.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import sys
from pathlib import Path


def count(registry: object) -> int:
    return sum(c.name == "ESCWindowAttention" for c in registry.all_creators)  # type: ignore[attr-defined]


def main(module_name: str, mode: str, plugin: str) -> None:
    trt = importlib.import_module(module_name)
    registry = trt.get_plugin_registry()
    handle = None
    if mode in ("ctypes", "both"):
        ctypes.CDLL(plugin, mode=ctypes.RTLD_GLOBAL)
    if mode in ("registry", "both"):
        handle = registry.load_library(plugin)
    if mode == "project":
        from esc_deploy.export.trt.env import require_runtime
        from esc_deploy.export.trt.plugin import load_plugin_library

        flavour = {"tensorrt_rtx_bindings": "tensorrt-rtx"}.get(module_name, "tensorrt")
        load_plugin_library(Path(plugin), require_runtime(flavour))  # type: ignore[arg-type]
    print(json.dumps({"creators": count(registry), "handle": handle is not None}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
