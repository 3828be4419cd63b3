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
