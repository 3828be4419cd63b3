"""The fused kernel's instruction budget, read from its SASS on a machine without a GPU.

Compiles engines/plugin/escWindowAttentionKernel.cu with nvcc for each architecture (``-cubin``), disassembles
it with nvdisasm (what ``cuobjdump -sass`` calls; PyPI wheel ``nvidia-cuda-nvdisasm``), and reports per kernel
body, for the ESC configuration (head size 16, window 32, fp32 bias table; fp16 tensors for the tensor-core
body, fp32 for the SIMT body):

- registers and spill bytes (ptxas -v), shared memory per block (the launch plan at 640x360), resident blocks
  per SM (from registers, shared memory and warps, by the occupancy rules of the architecture);
- issued instructions per 16-query x 64-key tile in the main loop, per warp, in total and by class.

The main loop is the outermost loop of the body that holds its matrix products (HMMA) or, in the SIMT body,
its exponentials (MUFU.EX2); where a body has several (one per staging path), the one with the fewest
instructions, the path of interior windows. Every instruction of the loop counts once (a conditional block
too: the count is that of a tile on which a row maximum grew); a loop nested in it counts as often as it
runs, estimated from its exit test (bound / step; a step by a register is one step per thread of the launch),
and the text report lists each nested loop with that estimate. Predicated-off instructions are issued too.

    python validation/kernel_sass.py [--json] [--arch 90 --arch 80] [--update-doc docs/benchmarks.md]

--update-doc replaces the table between the markers TABLE_BEGIN and TABLE_END of that file; the section
between SECTION_BEGIN and SECTION_END around it (with the recorded history) is what validation/kernel_benchmark.py
keeps when it rewrites the file.

Exits 2 with one line where nvcc or nvdisasm is missing.
"""

import sys

from esc_deploy.validation.kernel.sass import main

if __name__ == "__main__":
    sys.exit(main())
