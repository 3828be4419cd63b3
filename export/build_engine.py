"""python export/build_engine.py [--onnx PATH] --fp16 [--plugin PATH.so] [--min-shape 1x3x64x64]
[--opt-shape 1x3x360x640] [--max-shape 1x3x1080x1920] [--workspace-gb N] [--timing-cache PATH]
[--output PATH] [--print-trtexec]

The command line of export/trt/cli.py (``--help`` for the options)."""

import sys

from esc_deploy.export.trt.cli import main

if __name__ == "__main__":
    sys.exit(main())
