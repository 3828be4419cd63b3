"""What an ESC deployment build costs: the ONNX export's seconds, and a TensorRT for RTX engine build's
seconds, engine MiB and peak RSS, per preset.

The command line of validation/bench/build_cost.py (``--help`` for the options)."""

import sys

from esc_deploy.validation.bench.build_cost import main

if __name__ == "__main__":
    sys.exit(main())
