"""The fused kernel's instruction budget, read from its SASS on a machine without a GPU.

The command line of validation/kernel/sass.py (``--help`` for the options)."""

import sys

from esc_deploy.validation.kernel.sass import main

if __name__ == "__main__":
    sys.exit(main())
