#!/usr/bin/env bash
# Everything only a CUDA GPU can show, prepared for a short slot (under 6 minutes on an H100/H200):
#   1. nvidia-smi and the clocks;
#   2. the build: the kernel library for this GPU (what esc.fused_attention loads), timed;
#   3. the `cuda` tests (fused kernel vs the float64 reference, the model with `fused` and `flex` vs `naive`);
#   4. esc_deploy.validation.kernel.gpu_check: the large-offset case (batch 2, 192 x 2040 x 2872 fp16, two
#      bottom-row windows vs separate runs on their crops, bitwise) and the kernel, compiled FlexAttention and SDPA
#      at 640x360 and 320x180, by CUDA events per call and by CUDA-graph replay, against the exp floor at the SM
#      clock read under load; it also writes OUTPUT_DIR/benchmarks.md (docs/benchmarks.md with its GPU section
#      measured).
#   5. engine-benchmark, where TensorRT can run engines here: the benchmark's two engine kinds, the plugin engine
#      (`tensorrt`) and the plugin-free one with TensorRT's own fused attention (`tensorrt-fused`), at the paper's
#      shapes (x2 and x4, 1280x720 output, fp16), same protocol as every case; skipped with the reason elsewhere.
#      The plugin case needs build/plugin/libesc_trt_plugin.so (else it is reported as skipped, with the reason).
# Optional second step (--full, or GPU_CHECK_FULL=1): the whole-model benchmark (longer than the slot).
# Each step has a time limit (together 520 s, plus 5 s grace each); a step that fails or times out is recorded
# and the next one runs.
#
# OUTPUT_DIR ends with a handful of files (copying results back from a lent GPU often limits their number):
# summary.txt (this script's output), benchmarks.md, kernel-gpu-check.{md,json}, cuda-tests.log, and logs.tar.gz
# with every step's log, the nvidia-smi reports and the junit XML.
# Usage: bash validation/gpu_check.sh [OUTPUT_DIR] [--full]   (default reports/gpu); from the repository root.
# A caller's own time limit should leave it about 7 minutes (the steps' limits, grace, nvidia-smi and the archive).
# PYTHON names the interpreter (default python3). Copy OUTPUT_DIR/benchmarks.md over docs/benchmarks.md once
# the numbers are reviewed (only its GPU section changed).
set -uo pipefail

out=reports/gpu
full=${GPU_CHECK_FULL:-0}
for arg in "$@"; do
    case "$arg" in
    --full) full=1 ;;
    *) out=$arg ;;
    esac
done
python=${PYTHON:-python3}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no CUDA GPU here (nvidia-smi missing or failing); nothing was run" >&2
    exit 2
fi
# The kernel tests look for nvcc on PATH; CUDA images often keep it only under /usr/local/cuda.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH="/usr/local/cuda/bin:$PATH"
fi

logs=$out/logs
mkdir -p "$logs"
exec > >(tee "$out/summary.txt") 2>&1
tee_pid=$!
export PYTHONPATH=. PYTHONUNBUFFERED=1
status=0
start=$(date +%s)

step() { # step NAME SECONDS COMMAND...: runs COMMAND with a time limit, output to LOGS/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s, at $(($(date +%s) - start))s)"
    if ! timeout --kill-after=5 "$limit" "$@" >"$logs/$name.log" 2>&1; then
        echo "gpu_check: $name failed or timed out (see $name.log in logs.tar.gz)"
        status=1
    fi
    tail -n 5 "$logs/$name.log"
}

echo "gpu_check: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "nvcc: $(command -v nvcc || echo none) $(nvcc --version 2>/dev/null | tail -n 1)"
nvidia-smi >"$logs/nvidia-smi.txt" 2>&1
nvidia-smi -q -d CLOCK >"$logs/clocks.txt" 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu \
    --format=csv 2>&1

step build 60 "$python" -c "import time, torch, esc.fused_attention as f; t = time.time(); \
f._load_library(torch.cuda.get_device_capability()); print(f'kernel library ready in {time.time() - t:.1f} s')"

step cuda-tests 140 "$python" -m pytest -m cuda tests/engines tests/esc -v -rs -p no:cacheprovider --durations=15 \
    --junitxml="$logs/cuda-tests.xml"
cp "$logs/cuda-tests.log" "$out/cuda-tests.log"

step kernel-gpu-check 140 "$python" validation/kernel_gpu_check.py --output-dir "$out" --doc "$out/benchmarks.md"

engines_skip=$("$python" -c "from esc_deploy.export.trt.env import cannot_run_engines; print(cannot_run_engines() or '')" 2>&1 | tail -n 1)
if [ -z "$engines_skip" ]; then
    step engine-benchmark 180 "$python" validation/benchmark.py --device cuda --backends tensorrt,tensorrt-fused \
        --dtype fp16 --scale 2,4 --report-dir "$out/engine-benchmark" --no-progress
else
    echo "gpu_check: engine-benchmark skipped: $engines_skip"
fi

if [ "$full" = 1 ]; then
    step model-benchmark 1800 "$python" validation/benchmark.py --device cuda --report-dir "$logs/benchmark" \
        --no-progress
fi

nvidia-smi --query-gpu=clocks.sm,clocks.max.sm,temperature.gpu --format=csv 2>&1
echo "gpu_check: results in $out after $(($(date +%s) - start))s (exit $status)"
tar -czf "$out/logs.tar.gz" -C "$out" logs && rm -rf "$logs"
exec >&- 2>&-
wait "$tee_pid" # summary.txt complete before the script returns
exit $status
