"""python validation/parity.py [--checkpoint PATH] [--backends LIST] [--images DIR] [--report-dir DIR]

Numerical parity of every ESC backend against eager PyTorch float32 on real photographs: torch-fp16,
ONNX Runtime on the plugin and native graphs in float32 and mixed fp16, and a TensorRT engine. Backends
that cannot run here are listed as "skipped: reason". Writes parity.json, parity.md and parity.png.

Exit code: 0 when every backend that ran passed, 1 when one failed (or none ran), 2 on a usage error.
Thresholds: THRESHOLDS in validation/accuracy/stats.py. Every fp16 backend keeps in float32 what the
calibrated fp16 rule (esc/fp16.py) says, on the same calibration set (--calibration); an fp16 backend
that still fails gets a line naming the first value that overflows fp16 and the command to calibrate.
The library is validation/accuracy/suite.py (runners: parity_runners.py, comparators: parity_stats.py).
"""

import sys

from esc_deploy.validation.accuracy.cli import main

if __name__ == "__main__":
    sys.exit(main())
