"""The default model's parity report, the one CI keeps: `python validation/parity.py` with every default
(the seeded ESC-light x4, the bundled photographs, every backend this machine can run) passes and writes
its report. It runs on the worker of the default model's other tests and reuses their exports (the
per-process cache of validation/backends.py's export_graphs, which tests/conftest.py's ExportCache
fills); tests/check.sh names the folder to keep (ESC_PARITY_REPORT_DIR)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from esc_deploy.validation.accuracy import cli as parity

pytestmark = pytest.mark.xdist_group("default")


def test_default_parity_report_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = Path(os.environ.get("ESC_PARITY_REPORT_DIR") or tmp_path / "parity")
    code = parity.main(["--report-dir", str(folder)])
    assert code == 0, capsys.readouterr().out
    assert (folder / "parity.md").read_text().startswith("# Parity: PASS")
    report = json.loads((folder / "parity.json").read_text())
    assert report["verdict"] == "PASS"
    statuses = {b["name"]: b["status"] for b in report["backends"]}
    for backend in ("onnxruntime-plugin", "onnxruntime-native", "onnxruntime-fp16-plugin", "torch-fp16"):
        assert statuses[backend] == "PASS", statuses
    # The default model stays fp16 as calibrated by default (what `to_onnx.py --precision fp16` writes): no
    # value over the limit, and every weight but the plugin's float32 relative-position tables (3 x 4 x 63^2
    # of 641k values).
    plan = report["fp16_plans"]["plugin"]
    assert plan["calibrated"] and plan["unsafe_scopes"] == [] and plan["accuracy"]["fp32_units_by_accuracy"] == []
    assert list(plan["fp32_reasons"]) == ["op type"]  # as the uncalibrated conversion (test_attention_paths.py)
    assert plan["fp16_node_share"] >= 0.95 and plan["fp16_weight_share"] >= 0.92
