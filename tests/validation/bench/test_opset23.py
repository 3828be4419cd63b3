"""The onnxruntime-opset23 backend on the tiny checkpoint: the native graph exported at opset 23, with one
standard Attention node per window attention, runs through the benchmark's command line."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import esc
from esc_deploy.validation.backends import export_graphs
from esc_deploy.validation.bench import cli as benchmark
from tests.conftest import GOLDEN_DIR

TINY = GOLDEN_DIR / "tiny_x2.pth"


def test_opset23_graph_runs_with_the_threads_asked(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    argv = ["--checkpoint", str(TINY), "--output-size", "64x48", "--dtype", "fp32", "--device", "cpu",
            "--backends", "onnxruntime-opset23", "--runs", "2", "--warmup", "1", "--threads", "1",
            "--report-dir", str(tmp_path), "--no-progress"]  # fmt: skip
    try:
        assert benchmark.main(argv) == 0
    finally:
        torch.set_num_threads(threads)  # --threads sets the process's
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert report["options"]["threads"] == 1
    (case,) = report["cases"]
    assert case["status"] == "ok", case["reason"]
    assert case["runs"] == len(case["times_ms"]) > 0 and case["memory_mib"] > 0
    assert "native graph, opset 23" in case["detail"] and "intra-op threads 1" in case["detail"]
    model = esc.load_model(TINY)
    graph = export_graphs(model, ["native"], opset=23)["native"]  # the benchmark's export, cached
    attention = [n for n in graph.graph.node if n.op_type == "Attention" and n.domain in ("", "ai.onnx")]
    assert len(attention) == len(model.window_attentions())
