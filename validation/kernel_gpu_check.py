"""The fused kernel's GPU-only checks that fit a short slot: the large-offset case and per-call / graph timings.

The command line of validation/kernel/gpu_check.py (``--help`` for the options)."""

import sys

from esc_deploy.validation.kernel.gpu_check import main

if __name__ == "__main__":
    sys.exit(main())
