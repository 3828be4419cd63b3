"""python export/to_onnx.py [--checkpoint PATH] [--output PATH] [--attention plugin|native]
[--precision fp32|fp16] [--opset N] [--static-shape BxCxHxW]

The command line of export/onnx_graph/cli.py (``--help`` for the options)."""

import sys

from esc_deploy.export.onnx_graph.cli import main

if __name__ == "__main__":
    sys.exit(main())
