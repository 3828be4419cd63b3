"""python export/pipeline.py: the whole pipeline on the built-in default model, step by step.

1. export ESC-light x4 (seeded random weights) to ONNX with the plugin attention node;
2. check the file against PyTorch with ONNX Runtime on a real photograph;
3. build the TensorRT fp16 engine where TensorRT, a CUDA GPU and the plugin library are present,
   and otherwise say that this step was skipped and why.
Exit code 0 when every step that could run passed, 1 when a check failed, 2 on a usage error.
"""

import sys

from esc_deploy.export.quickstart import main

if __name__ == "__main__":
    sys.exit(main())
