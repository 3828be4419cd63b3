"""Write a Triton model repository for an exported ESC model (TensorRT engine and/or ONNX file).

The command line of serving/model_repository/cli.py (``--help`` for the options)."""

import sys

from esc_deploy.serving.model_repository.cli import main

if __name__ == "__main__":
    sys.exit(main())
