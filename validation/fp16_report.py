"""python validation/fp16_report.py [--output docs/fp16.md] [--runs N] [--shape HxW]

What the calibrated fp16 rule keeps in float32, and what it costs: for the seeded default ESC-light x4
and the same model with blocks.1.pconvs.2.aggr scaled by 1e7 (float32 activations above 1e6 in
blocks.1), the plugin graph's fp16 share of nodes and weights, the calibration's time, and ONNX
Runtime CPU latency (median of --runs) of the calibrated file against the uncalibrated one.
"""

import sys

from esc_deploy.validation.accuracy.fp16_report import main

if __name__ == "__main__":
    sys.exit(main())
