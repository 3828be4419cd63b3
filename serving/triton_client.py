"""Upscale an image through a running Triton server, tiling images larger than the model accepts.

The command line of serving/client/cli.py (``--help`` for the options)."""

import sys

from esc_deploy.serving.client.cli import main

if __name__ == "__main__":
    sys.exit(main())
