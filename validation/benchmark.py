"""python validation/benchmark.py [--backends LIST] [--output-size 1280x720] [--scale 2,4] [--dtype fp16,fp32]
[--runs N] [--warmup N] [--device cuda|cpu] [--checkpoint PATH] [--report-dir DIR]

Latency and peak memory of ESC per backend (eager-naive, eager-sdpa, eager-flex, eager-fused,
onnxruntime, onnxruntime-plugin, tensorrt), the paper's protocol on a GPU: 1280x720 output, warm-up,
CUDA events, median of 100 runs, torch.cuda.max_memory_allocated (TensorRT: the engine's device
memory). Without a GPU it
runs in CPU mode (perf_counter, peak RSS); lower --runs there. Backends that cannot run are listed as
"skipped: reason". Writes benchmark.json, benchmark.md and benchmark.png; prints the table.

Exit code: 0 when every case that could run ran, 1 when one raised, 2 on a usage error.
"""

import sys

from esc_deploy.validation.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
