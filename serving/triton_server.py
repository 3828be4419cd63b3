"""A local Triton Inference Server from the ``nvidia-pytriton`` wheel, for tests, the benchmark and CPU serving.

The command line of serving/local_server.py (``--help`` for the options)."""

import sys

from esc_deploy.serving.local_server import main

if __name__ == "__main__":
    sys.exit(main())
