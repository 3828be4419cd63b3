"""Default paths shared by the export, engine and serving commands."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# Every default output (ONNX files, engines, their sidecars) goes under the ignored build/ folder;
# engines/ holds sources only.
OUTPUT_DIR = REPO_ROOT / "build"

DEFAULT_PRESET = "esc-light"
DEFAULT_SCALE = 4
DEFAULT_SEED = 0
# What `python export/to_onnx.py` writes with no arguments.
DEFAULT_ONNX = OUTPUT_DIR / f"{DEFAULT_PRESET}_x{DEFAULT_SCALE}.onnx"
# What `cmake --build build/plugin` produces.
DEFAULT_PLUGIN = REPO_ROOT / "build" / "plugin" / "libesc_trt_plugin.so"
