"""The exported model's I/O tensor names: written by the exporter, the engine's and Triton's defaults.

NCHW float32 with dynamic N, H and W (export/to_onnx.py).
"""

from __future__ import annotations

INPUT_NAME = "input"
OUTPUT_NAME = "output"
