"""python validation/parity.py [--checkpoint PATH] [--backends LIST] [--images DIR] [--report-dir DIR]

The command line of validation/accuracy/cli.py (``--help`` for the options)."""

import sys

from esc_deploy.validation.accuracy.cli import main

if __name__ == "__main__":
    sys.exit(main())
