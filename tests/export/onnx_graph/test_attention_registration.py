"""The export attention backends are registered explicitly, never by an import, so esc's set of
backends is the same whatever a process imported first; their torch op is defined on first use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from esc.attention import get_attention
from esc.layers import WindowAttention
from esc_deploy.export.onnx_graph import attention as onnx_attention

REPO = Path(__file__).resolve().parents[3]
EXPORT_BACKENDS = {"onnx-plugin", "onnx-native", "onnx-native-sdpa"}

OP_DEFINED = 'hasattr(torch.ops.esc_export, "window_attention")'
# esc first, then what importing the export backends changes.
ESC_FIRST = f"""
import json, torch, esc
state = {{"listed": esc.available_attention()}}
import esc_deploy.export.onnx_graph.attention
state["after_import"] = esc.available_attention()
state["op_after_import"] = {OP_DEFINED}
print(json.dumps(state))
"""
# What registering (twice: idempotent) and then using the plugin backend change.
REGISTER_THEN_USE = f"""
import json, torch, esc
from esc.layers import WindowAttention
from esc_deploy.export.onnx_graph import attention as oa
oa.register()
oa.register()
state = {{"after_register": esc.available_attention(), "op_after_register": {OP_DEFINED}}}
WindowAttention(32, 8, 2, attention=oa.PLUGIN_BACKEND)(torch.randn(1, 32, 8, 8))
state["op_after_use"] = {OP_DEFINED}
print(json.dumps(state))
"""
EXPORT_FIRST = "import json, esc_deploy.export.onnx_graph.attention, esc; print(json.dumps(esc.available_attention()))"


def _fresh_process(code: str) -> Any:
    """Run ``code`` in a new interpreter (nothing imported yet); its last printed line, as JSON."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": path},
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_backends_are_the_same_whatever_was_imported_first() -> None:
    state = _fresh_process(ESC_FIRST)
    assert state["listed"] == _fresh_process(EXPORT_FIRST) == ["flex", "fused", "naive", "sdpa"]
    assert state["after_import"] == state["listed"], (
        "importing esc_deploy.export.onnx_graph.attention registered backends"
    )
    assert not state["op_after_import"], "importing esc_deploy.export.onnx_graph.attention defined its torch op"


def test_register_adds_the_export_backends_and_use_defines_the_op() -> None:
    state = _fresh_process(REGISTER_THEN_USE)
    assert set(state["after_register"]) == {"flex", "fused", "naive", "sdpa", *EXPORT_BACKENDS}
    assert not state["op_after_register"]
    assert state["op_after_use"]


def test_registered_names_are_the_module_functions() -> None:
    onnx_attention.register()
    assert get_attention(onnx_attention.PLUGIN_BACKEND) is onnx_attention.plugin_attention
    assert get_attention(onnx_attention.NATIVE_BACKEND) is onnx_attention.native_attention
    assert get_attention(onnx_attention.NATIVE_SDPA_BACKEND) is onnx_attention.native_sdpa_attention
    assert onnx_attention.window_attention_op() is onnx_attention.window_attention_op()  # defined once


@pytest.mark.parametrize("attention", sorted(EXPORT_BACKENDS))
def test_export_backends_match_naive(attention: str) -> None:
    onnx_attention.register()
    torch.manual_seed(0)
    module = WindowAttention(64, 8, 4, attention="naive")
    with torch.no_grad():
        module.relative_position_bias.normal_(0, 0.5)
    qkv = torch.randn(2, 192, 13, 21)
    ref = get_attention("naive")(module, qkv)
    assert (get_attention(attention)(module, qkv) - ref).abs().max().item() <= 1e-5
