"""ESC: Emulating Self-Attention with Convolution for Efficient Image Super-Resolution (ICCV 2025).

The official function in pure PyTorch, loading the official checkpoints::

    import esc
    model = esc.load_model("ESC_light_X4.pth")      # family and hyperparameters inferred
    model = esc.build_model("esc-light", scale=4)   # official preset, random weights
"""

from esc.attention import available_attention, register_attention
from esc.config import PRESETS, ESCConfig, preset_config
from esc.loading import CheckpointError, infer_config, load_model, read_state_dict
from esc.models import ESC, ESCFP, ESCBase, ESCReal, build_model, create_model

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
