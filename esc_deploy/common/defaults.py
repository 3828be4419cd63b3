"""Default paths shared by the export, engine and serving commands."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from esc.models import ESCBase

# The source checkout this module sits in, if it sits in one (an installed wheel has none).
REPO_ROOT = Path(__file__).resolve().parents[2]
IN_CHECKOUT = (REPO_ROOT / "pyproject.toml").is_file()
# Where default outputs go: the checkout, or the working directory for an installed package.
PROJECT_DIR = REPO_ROOT if IN_CHECKOUT else Path.cwd()
# Every default output (ONNX files, engines, their sidecars) goes under an ignored build/ folder;
# engines/ holds sources only.
OUTPUT_DIR = PROJECT_DIR / "build"
# The reports the benchmarks rewrite (docs/benchmarks.md, docs/serving.md, ...).
DOCS_DIR = PROJECT_DIR / "docs"

DEFAULT_PRESET = "esc-light"
DEFAULT_SCALE = 4
DEFAULT_SEED = 0
# What `python export/to_onnx.py` writes with no arguments.
DEFAULT_ONNX = OUTPUT_DIR / f"{DEFAULT_PRESET}_x{DEFAULT_SCALE}.onnx"
# What `cmake --build build/plugin` produces.
DEFAULT_PLUGIN = OUTPUT_DIR / "plugin" / "libesc_trt_plugin.so"


def default_model() -> ESCBase:
    """The built-in model: the official preset with seeded random weights (no download needed)."""
    import torch

    import esc

    torch.manual_seed(DEFAULT_SEED)
    return esc.build_model(DEFAULT_PRESET, scale=DEFAULT_SCALE)
