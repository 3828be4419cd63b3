"""Time ESC's window attention: the fused kernel against compiled FlexAttention and SDPA, and the exp floor.

One layer at ESC's shapes (dim 64, 4 heads, window 32, fp16) for a 1280x720 output at x2 and x4, i.e. qkv maps
of 640x360 and 320x180. Every backend runs the whole map-to-map function the model calls (``esc.attention``):
padding, windowing, attention, merging and cropping. Times are medians of CUDA-event timings after a warm-up.

The exponential-throughput floor: softmax evaluates one exponential per score, B * heads * nWindows * N * N
per layer (N = w * w), on the special function units; at S ex2 results per clock per SM the floor is
count / (SMs * S * clock). Defaults assume an H100 SXM (16 MUFU.EX2 per clock per SM, ~1.83 GHz boost; the
SM count is read from the device); rate and clock are options because CUDA does not report them.

    python validation/kernel_benchmark.py [--warmup 10] [--iters 100] [--output docs/benchmarks.md]

Exits 2 with a one-line message where no CUDA device exists.
"""

import sys

from esc_deploy.validation.kernel.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
