"""Throughput and latency of the Python-backend model on a local Triton server, against ONNX Runtime in-process.

    python validation/triton_bench.py                       # exports the default model if needed
    python validation/triton_bench.py --onnx build/esc-light_x4.onnx --requests 32 --report docs/serving.md

One run: `make_triton_repo` on the ONNX file (the ``<name>_python`` variant), PyTriton's tritonserver
(serving/triton_server.py), then for 1, 4 and 16 concurrent clients (threads, one connection each)
the same number of requests of one 256x256 image each, and the same work through one ONNX Runtime
session in this process from as many threads, one call at a time (the server runs one instance).
Reported per case: throughput (images/s), and the median (p50) and p99 latency of one request; each
case runs ``--repeats`` times and the report gives the median over repeats. The report replaces the
section between the markers in ``--report``. This is a benchmark, not a test: nothing fails on slow numbers.
"""

import sys

from esc_deploy.validation.bench.serving_load import main

if __name__ == "__main__":
    sys.exit(main())
