"""The model's facts in the ONNX file: written by the exporter, read by every later stage.

`esc.config` holds the model's `ESCConfig` as JSON (family, scale, window size, ...; the minimum input
side follows from the window). The engine build copies it into the sidecar, the Triton repository into
config.pbtxt, and the client reads it from there: no stage asks for a fact an earlier one knew.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from esc.config import ESCConfig
from esc_deploy.export.onnx_graph.graph_file import read_graph

CONFIG_KEY = "esc.config"
ATTENTION_KEY = "esc.attention"


def model_props(config: ESCConfig, attention: str) -> dict[str, str]:
    """The metadata_props the exporter writes."""
    return {CONFIG_KEY: json.dumps(config.to_dict()), ATTENTION_KEY: attention}


def config_from_dict(data: Any, source: str) -> ESCConfig:
    """ESCConfig from its `to_dict()` form; ValueError naming `source` for anything else."""
    names = [f.name for f in dataclasses.fields(ESCConfig)]
    if not isinstance(data, dict) or sorted(data) != sorted(names):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{source}: expected an ESC config with the keys {names}, found {found}")
    try:
        return ESCConfig(**data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: invalid ESC config: {exc}") from None


def read_model_config(onnx_path: Path) -> ESCConfig:
    """The `esc.config` metadata of an exported ONNX file; ValueError (one line) if it has none."""
    try:
        model = read_graph(onnx_path)
    except Exception as exc:  # onnx raises DecodeError, OSError, ValueError... for a file that is not ONNX
        raise ValueError(f"{onnx_path} is not a readable ONNX file ({type(exc).__name__}: {exc})") from None
    props = {p.key: p.value for p in model.metadata_props}
    if CONFIG_KEY not in props:
        raise ValueError(
            f"{onnx_path} has no {CONFIG_KEY!r} metadata: export it with `python export/to_onnx.py`, "
            "which records the model's scale, window size and minimum side"
        )
    try:
        data = json.loads(props[CONFIG_KEY])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{onnx_path}: {CONFIG_KEY!r} metadata is not JSON ({exc})") from None
    return config_from_dict(data, f"{onnx_path} metadata {CONFIG_KEY!r}")
