"""python validation/benchmark.py [--backends LIST] [--output-size 1280x720] [--scale 2,4] [--dtype fp16,fp32]
[--runs N] [--warmup N] [--device cuda|cpu] [--checkpoint PATH] [--report-dir DIR]

The command line of validation/bench/cli.py (``--help`` for the options)."""

import sys

from esc_deploy.validation.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
