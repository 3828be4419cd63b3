#!/usr/bin/env bash
# Everything only a CUDA GPU can show, in one run, with every result written under one folder:
#   1. the CUDA tests (fused kernel vs the float64 reference, the model with `fused` and `flex` vs `naive`),
#   2. the kernel benchmark (fused vs compiled FlexAttention and SDPA, exp floor) -> benchmarks.md,
#   3. the model benchmark (eager-naive/sdpa/flex/fused, onnxruntime; fp16 and fp32; x2 and x4) -> benchmark/.
# Usage: bash validation/gpu_check.sh [OUTPUT_DIR]   (default reports/gpu); run from the repository root.
# Copy OUTPUT_DIR/benchmarks.md over docs/benchmarks.md once the numbers are reviewed.
set -uo pipefail

out=${1:-reports/gpu}
mkdir -p "$out/benchmark"
export PYTHONPATH=. PYTHONUNBUFFERED=1
status=0

if ! nvidia-smi >"$out/nvidia-smi.txt" 2>&1; then
    echo "gpu_check: nvidia-smi failed; this script needs a CUDA GPU" >&2
    exit 2
fi

echo "== CUDA tests"
python -m pytest -m "cuda or nvcc" tests/engines tests/esc -q -rs -p no:cacheprovider \
    --junitxml="$out/cuda-tests.xml" 2>&1 | tee "$out/cuda-tests.log" || status=1

echo "== kernel benchmark"
python -m validation.kernel_benchmark --output "$out/benchmarks.md" 2>&1 | tee "$out/kernel-benchmark.log" || status=1

echo "== model benchmark"
python validation/benchmark.py --device cuda --report-dir "$out/benchmark" --no-progress 2>&1 \
    | tee "$out/model-benchmark.log" || status=1

echo "gpu_check: results in $out (exit $status)"
exit $status
