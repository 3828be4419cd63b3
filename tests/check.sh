#!/usr/bin/env bash
# Everything CI checks, in order: lint, types (TensorRT calls against tensorrt-stubs), the test
# suite, and the CPU parity report (torch vs ONNX Runtime, plugin and native graphs, fp32 and fp16).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== ruff"
ruff check .
ruff format --check .

echo "== mypy"
python tests/repair_trt_stubs.py build/typings  # tensorrt-stubs as shipped is skipped by mypy
python tests/mypy_view.py build/mypy  # the installed package layout (pyproject maps the stage folders)
mypy

echo "== pytest"
# Two workers for two cores; exports of one checkpoint stay on one worker (see tests/conftest.py).
# pytest exits non-zero on failures and on "no tests collected" (5).
python -m pytest -n 2 --dist loadgroup --durations=15

echo "== parity report"
python validation/parity.py --report-dir reports/parity
