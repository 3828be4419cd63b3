"""Load official ESC checkpoints: read safely, detect the family, infer every hyperparameter.

In the style of spandrel: set every field from a named tensor's shape, with a comment where a value
cannot be inferred, and error messages that say what was expected and what was found.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from esc.config import REAL_SCALE, ESCConfig, Family
from esc.models import ESCBase, create_model

StateDict = dict[str, Tensor]
Checkpoint = str | os.PathLike[str] | Mapping[str, Any]

# Wrappers used by BasicSR (params_ema, params) and generic trainers (state_dict), in preference order.
_WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")


class CheckpointError(ValueError):
    """The file or state dict is not an ESC checkpoint this library can load."""


class UnsupportedVariantError(CheckpointError):
    """An ESC checkpoint of a variant this library recognises but does not implement (ESCRealM)."""


def read_state_dict(checkpoint: Checkpoint) -> StateDict:
    """A flat name -> tensor dict from a path (.pth/.pt/.safetensors) or an in-memory dict.

    Nothing is unpickled: ``torch.load(weights_only=True)`` or safetensors.
    """
    if isinstance(checkpoint, str | os.PathLike):
        raw: Mapping[str, Any] = _read_file(Path(checkpoint))
    elif isinstance(checkpoint, Mapping):
        raw = checkpoint
    else:
        raise CheckpointError(f"expected a path or a state dict, got {type(checkpoint).__name__}")
    for key in _WRAPPER_KEYS:
        inner = raw.get(key)
        if isinstance(inner, Mapping):
            raw = inner
            break
    state = {_strip_prefix(k): v for k, v in raw.items() if isinstance(v, Tensor)}
    if not state:
        raise CheckpointError(f"no tensors found; top-level keys: {_preview(raw)}")
    return state


def _read_file(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any reader failure is the same user error: not a readable checkpoint
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"cannot read {path}: {reason}") from exc
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{path} holds a {type(loaded).__name__}, expected a state dict")
    return loaded


def _strip_prefix(key: str) -> str:
    return key[len("module.") :] if key.startswith("module.") else key


def _preview(keys: Any, n: int = 6) -> str:
    names = list(keys)
    more = f", ... ({len(names)} in all)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def _shape(state: StateDict, key: str, ndim: int) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"expected tensor {key!r}, not found; keys: {_preview(state)}")
    shape = tuple(state[key].shape)
    if len(shape) != ndim:
        raise CheckpointError(f"expected {key} to have {ndim} dims, found shape {shape}")
    return shape


def _count(state: StateDict, pattern: str) -> int:
    """Number of distinct indices i in keys matching ``pattern`` (with one ``(\\d+)`` group)."""
    regex = re.compile(pattern)
    return len({m.group(1) for k in state if (m := regex.match(k))})


def detect_family(state: StateDict) -> Family:
    if "to_img.offset.weight" in state or "to_img.MetaUpsample" in state:
        raise UnsupportedVariantError(
            "ESC-Real with DySample or UniUpsample (ESCRealM) is not supported; "
            "expected the default nearest+conv upsampler (to_img.1.weight ... to_img.8.weight)"
        )
    if "lk_channel" in state:
        return "esc-fp"
    if "plk_filter" in state and "skip.0.weight" in state:
        return "esc-real"
    if "plk_filter" in state:
        return "esc"
    raise CheckpointError(
        "not an ESC checkpoint: expected 'plk_filter' (ESC, ESC-Real) or 'lk_channel' (ESC-FP); "
        f"found keys: {_preview(state)}"
    )


def infer_config(state: StateDict) -> ESCConfig:
    """Every hyperparameter from tensor names and shapes."""
    family = detect_family(state)
    dim = _shape(state, "proj.weight", 4)[0]
    if family == "esc-fp":
        pdim = _shape(state, "lk_channel", 4)[0]
        kernel_size = _shape(state, "lk_spatial", 4)[-1]
    else:
        pdim, _, kernel_size, _ = _shape(state, "plk_filter", 4)
    n_blocks = _count(state, r"blocks\.(\d+)\.")
    if n_blocks == 0:
        raise CheckpointError(f"expected blocks.0.* tensors, found keys: {_preview(state)}")
    conv_blocks = _count(state, r"blocks\.0\.pconvs\.(\d+)\.")
    num_heads, table = _shape(state, "blocks.0.attn.relative_position_bias", 2)
    side = math.isqrt(table)  # table has (2w - 1)^2 columns
    if side * side != table or side % 2 == 0:
        raise CheckpointError(f"expected relative_position_bias with (2w-1)^2 columns, found {table}")
    window_size = (side + 1) // 2
    hidden = _shape(state, "blocks.0.convffns.0.proj.weight", 4)[0]
    exp_ratio = hidden / dim  # the official code rounds dim * exp_ratio down; hidden / dim round-trips
    use_ln = "blocks.0.lns.0.weight" in state
    if family == "esc-real":
        scale = REAL_SCALE  # not stored: the upsampler is two fixed nearest-neighbour x2 stages
    else:
        rows = _shape(state, "to_img.weight", 4)[0]
        scale = math.isqrt(rows // 3)
        if 3 * scale * scale != rows:
            raise CheckpointError(f"expected to_img.weight with 3*s^2 rows, found {rows}")
    return ESCConfig(
        family=family, dim=dim, pdim=pdim, kernel_size=kernel_size, n_blocks=n_blocks,
        conv_blocks=conv_blocks, window_size=window_size, num_heads=num_heads, scale=scale,
        exp_ratio=exp_ratio, use_ln=use_ln,
    )  # fmt: skip


def load_model(checkpoint: Checkpoint, *, device: str | torch.device = "cpu", attention: str | None = None) -> ESCBase:
    """An eval-mode ESC/ESC-FP/ESC-Real model with the checkpoint's weights, strictly matched.

    ``attention``: ``naive``, ``sdpa``, ``flex``, ``fused`` or None for the device's default.
    """
    state = read_state_dict(checkpoint)
    config = infer_config(state)
    model = create_model(config, attention=attention or "auto")
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{config.family} checkpoint does not match the inferred config {config}: "
            f"missing {_preview(result.missing_keys)}; unexpected {_preview(result.unexpected_keys)}"
        )
    return model.to(device).eval()
