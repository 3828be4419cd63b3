"""Throughput and latency of the Python-backend model on a local Triton server, against ONNX Runtime in-process.

The command line of validation/bench/serving_load.py (``--help`` for the options)."""

import sys

from esc_deploy.validation.bench.serving_load import main

if __name__ == "__main__":
    sys.exit(main())
