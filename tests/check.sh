#!/usr/bin/env bash
# Everything CI checks, in order: lint, types (TensorRT calls against tensorrt-stubs), and the test
# suite, which writes the CPU parity report (torch vs ONNX Runtime, plugin and native graphs, fp32 and fp16).
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
# pytest exits non-zero on failures and on "no tests collected" (5). The CPU parity report is
# `python validation/parity.py` run by tests/validation/accuracy/test_default_report.py, which reuses
# the default model's exports of the other tests and keeps the report here:
ESC_PARITY_REPORT_DIR="$PWD/reports/parity" python -m pytest -n 2 --dist loadgroup --durations=15
sed -n '1,/^## Verdicts/p' reports/parity/parity.md  # the verdict and the table
