"""What an ESC deployment build costs: the ONNX export's seconds, and a TensorRT for RTX engine build's
seconds, engine MiB and peak RSS, per preset.

    python validation/engine_build_cost.py --plugin build/plugin/libesc_trt_plugin.so [--runs 3]
        [--presets esc-light,esc] [--report docs/engine_build.md]

Each preset (seeded random weights in the official layout; the cost does not depend on the values) is
exported with the plugin node, then built `--runs` times by `python export/build_engine.py --fp16
--runtime tensorrt-rtx` at the default profile, each build a fresh process measured with wait4()
(wall time, peak resident memory). A benchmark, not a test: it writes a Markdown report with medians,
the machine and the versions.
"""

import sys

from esc_deploy.validation.bench.build_cost import main

if __name__ == "__main__":
    sys.exit(main())
