"""Time ESC's window attention: the fused kernel against compiled FlexAttention and SDPA, and the exp floor.

The command line of validation/kernel/benchmark.py (``--help`` for the options)."""

import sys

from esc_deploy.validation.kernel.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
