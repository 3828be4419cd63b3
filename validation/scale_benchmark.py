"""python validation/scale_benchmark.py [--output docs/scale.md] [--runs N] [--images N] [--frames N] [--size S]

The command line of validation/bench/scale.py (``--help`` for the options)."""

import sys

from esc_deploy.validation.bench.scale import main

if __name__ == "__main__":
    sys.exit(main())
