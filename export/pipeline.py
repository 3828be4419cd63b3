"""python export/pipeline.py: the whole pipeline on the built-in default model, step by step.

The command line of export/quickstart.py (``--help`` for the options)."""

import sys

from esc_deploy.export.quickstart import main

if __name__ == "__main__":
    sys.exit(main())
