"""Load on the image model of a local Triton server: photographs of mixed sizes, every answer checked.

The command line of validation/bench/image_load.py (``--help`` for the options)."""

import sys

from esc_deploy.validation.bench.image_load import main

if __name__ == "__main__":
    sys.exit(main())
