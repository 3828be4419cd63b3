"""python validation/fp16_report.py [--output docs/fp16.md] [--calibration-shape HxW]

The command line of validation/accuracy/fp16_report.py (``--help`` for the options)."""

import sys

from esc_deploy.validation.accuracy.fp16_report import main

if __name__ == "__main__":
    sys.exit(main())
