"""The fused kernel's GPU-only checks that fit a short slot: the large-offset case and per-call / graph timings.

- Large offsets: a batch-2, 192 x 2040 x 2872 fp16 qkv map (4.5 GB, plane offsets past 2^31 elements in the
  batch), window 32, 4 heads; the bottom-right window (rows and columns reflected) must equal, bitwise, a
  separate run on the crop that holds it (the reflect padding of the crop is that of the map).
- Timings of one ESC attention layer (dim 64, 4 heads, window 32, fp16) at the qkv maps 640x360 and 320x180:
  the fused kernel, compiled FlexAttention and SDPA (esc.attention's map-to-map functions), each by CUDA events
  per call (median) and by CUDA-graph replay (a graph of `--graph-calls` calls, replayed, time per call),
  against the exp floor at the clock read from nvidia-smi.

    python validation/kernel_gpu_check.py --output-dir reports/gpu [--iters 50]

Writes kernel-gpu-check.json and kernel-gpu-check.md there. Exits 2 with one line where no CUDA device exists,
1 if the large-offset check fails.
"""

import sys

from esc_deploy.validation.kernel.gpu_check import main

if __name__ == "__main__":
    sys.exit(main())
