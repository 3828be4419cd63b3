"""python export/to_onnx.py [--checkpoint PATH] [--output PATH] [--attention plugin|native]
[--precision fp32|fp16] [--opset N] [--static-shape BxCxHxW]"""

import sys

from export.onnx_cli import main

if __name__ == "__main__":
    sys.exit(main())
