#!/usr/bin/env bash
# Everything only a CUDA GPU can show, prepared for a short slot (under 6 minutes on an H100/H200), with every
# result written under one folder:
#   1. nvidia-smi and the clocks;
#   2. the build: the kernel library for this GPU (what esc.fused_attention loads), timed;
#   3. the `cuda` tests (fused kernel vs the float64 reference, the model with `fused` and `flex` vs `naive`);
#   4. esc_deploy.validation.kernel.gpu_check: the large-offset case (batch 2, 192 x 2040 x 2872 fp16, bottom-right window
#      vs a separate run on its crop, bitwise) and the kernel, compiled FlexAttention and SDPA at 640x360 and
#      320x180, by CUDA events per call and by CUDA-graph replay;
#   5. esc_deploy.validation.kernel.benchmark -> OUTPUT_DIR/benchmarks.md (fused vs flex vs sdpa, exp floor).
# Optional second step (--full, or GPU_CHECK_FULL=1): the whole-model benchmark (longer than the slot).
# Each step has a time limit (together 330 s, plus 5 s grace each); a step that fails or times out is recorded
# and the next one runs.
# Usage: bash validation/gpu_check.sh [OUTPUT_DIR] [--full]   (default reports/gpu); from the repository root.
# Copy OUTPUT_DIR/benchmarks.md over docs/benchmarks.md once the numbers are reviewed (only its GPU section changed).
set -uo pipefail

out=reports/gpu
full=${GPU_CHECK_FULL:-0}
for arg in "$@"; do
    case "$arg" in
    --full) full=1 ;;
    *) out=$arg ;;
    esac
done

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no CUDA GPU here (nvidia-smi missing or failing); nothing was run" >&2
    exit 2
fi

mkdir -p "$out/benchmark"
export PYTHONPATH=. PYTHONUNBUFFERED=1
status=0
start=$(date +%s)

step() { # step NAME SECONDS COMMAND...: runs COMMAND with a time limit, output to OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s, at $(($(date +%s) - start))s)"
    if ! timeout --kill-after=5 "$limit" "$@" >"$out/$name.log" 2>&1; then
        echo "gpu_check: $name failed or timed out (see $out/$name.log)"
        status=1
    fi
    tail -n 5 "$out/$name.log"
}

nvidia-smi >"$out/nvidia-smi.txt" 2>&1
nvidia-smi -q -d CLOCK >"$out/clocks.txt" 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu \
    --format=csv >"$out/clocks.csv" 2>&1
cat "$out/clocks.csv"

step build 60 python -c "import time, torch, esc.fused_attention as f; t = time.time(); \
f._load_library(torch.cuda.get_device_capability()); print(f'kernel library ready in {time.time() - t:.1f} s')"

step cuda-tests 110 python -m pytest -m cuda tests/engines tests/esc -q -rs -p no:cacheprovider \
    --junitxml="$out/cuda-tests.xml"

step kernel-gpu-check 100 python validation/kernel_gpu_check.py --output-dir "$out"

step kernel-benchmark 60 python validation/kernel_benchmark.py --iters 50 --output "$out/benchmarks.md"

if [ "$full" = 1 ]; then
    step model-benchmark 1800 python validation/benchmark.py --device cuda --report-dir "$out/benchmark" --no-progress
fi

nvidia-smi --query-gpu=clocks.sm,clocks.max.sm,temperature.gpu --format=csv >>"$out/clocks.csv" 2>&1
echo "gpu_check: results in $out after $(($(date +%s) - start))s (exit $status)"
exit $status
