"""ESC: Emulating Self-Attention with Convolution for Efficient Image Super-Resolution (ICCV 2025).

The official function in pure PyTorch, loading the official checkpoints::

    import esc
    model = esc.load_model("ESC_light_X4.pth")      # family and hyperparameters inferred
    model = esc.build_model("esc-light", scale=4)   # official preset, random weights

The names below are imported on first use (PEP 562), so that ``import esc.config`` or
``import esc.tiling`` (the Triton client's path) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from esc.attention import available_attention, register_attention
    from esc.config import PRESETS, ESCConfig, preset_config
    from esc.loading import CheckpointError, infer_config, load_model, read_state_dict
    from esc.models import ESC, ESCFP, ESCBase, ESCReal, build_model, create_model

_SOURCES = {
    "available_attention": "esc.attention",
    "register_attention": "esc.attention",
    "PRESETS": "esc.config",
    "ESCConfig": "esc.config",
    "preset_config": "esc.config",
    "CheckpointError": "esc.loading",
    "infer_config": "esc.loading",
    "load_model": "esc.loading",
    "read_state_dict": "esc.loading",
    "ESC": "esc.models",
    "ESCFP": "esc.models",
    "ESCBase": "esc.models",
    "ESCReal": "esc.models",
    "build_model": "esc.models",
    "create_model": "esc.models",
}

__all__ = [
    "ESC",
    "ESCFP",
    "PRESETS",
    "CheckpointError",
    "ESCBase",
    "ESCConfig",
    "ESCReal",
    "available_attention",
    "build_model",
    "create_model",
    "infer_config",
    "load_model",
    "preset_config",
    "read_state_dict",
    "register_attention",
]


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module 'esc' has no attribute {name!r}")
    value = getattr(importlib.import_module(source), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
