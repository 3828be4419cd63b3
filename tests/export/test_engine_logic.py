"""Logic around TensorRT that needs none: versions, fp16 detection, the plugin-layer check."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from export import plugin_contract
from export.engine_env import MissingDependencyError, TrtVersion, check_supported, require_tensorrt
from export.engine_files import sha256_file
from export.engine_options import EngineOptions, Precision
from export.engine_plugin import check_plugin_layers, esc_node_names, unplugged_nodes
from export.engine_precision import NetworkTyping, is_fp16_mixed, network_typing, planned_onnx


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("10.13.0.35", TrtVersion(10, 13, 0)),
        ("10.8.0.43.post1", TrtVersion(10, 8, 0)),
        ("11.0.0", TrtVersion(11, 0, 0)),
        ("11.2", TrtVersion(11, 2, 0)),
    ],
)
def test_trt_version_parse(text: str, version: TrtVersion) -> None:
    assert TrtVersion.parse(text) == version
    check_supported(version, text)


def test_trt_version_rules() -> None:
    assert not TrtVersion(10, 15, 1).is_strongly_typed_only
    assert TrtVersion(11, 0, 0).is_strongly_typed_only
    assert TrtVersion(10, 8, 0) < TrtVersion(10, 13, 0) < TrtVersion(11, 0, 0)
    with pytest.raises(ValueError, match="expected a TensorRT version"):
        TrtVersion.parse("ten")
    for text in ("8.6.1", "12.0.0"):
        with pytest.raises(MissingDependencyError, match=r"needs 10\.x or 11\.x"):
            check_supported(TrtVersion.parse(text), text)


def test_network_typing() -> None:
    assert network_typing(10) is NetworkTyping.WEAK
    assert network_typing(11) is NetworkTyping.STRONG


def test_require_tensorrt_when_import_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    with pytest.raises(MissingDependencyError, match=r"not installed .*pip install -e \.\[tensorrt\]"):
        require_tensorrt()


def test_require_tensorrt_with_only_stubs(monkeypatch: pytest.MonkeyPatch) -> None:
    """What tensorrt-stubs alone gives: `import tensorrt` succeeds, with nothing inside."""
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    with pytest.raises(MissingDependencyError, match="found only type stubs or an empty package"):
        require_tensorrt()


def test_fp16_detection(tiny_fp32_onnx: Path, tiny_fp16_onnx: Path) -> None:
    assert not is_fp16_mixed(tiny_fp32_onnx)
    assert is_fp16_mixed(tiny_fp16_onnx)


def test_planned_onnx(tiny_fp32_onnx: Path, tiny_fp16_onnx: Path) -> None:
    fp16 = EngineOptions(onnx=tiny_fp32_onnx, precision=Precision.FP16)
    assert planned_onnx(fp16, 10) == tiny_fp32_onnx
    assert planned_onnx(fp16, 11) == tiny_fp32_onnx.with_name("tiny.fp16.onnx")
    assert planned_onnx(EngineOptions(onnx=tiny_fp16_onnx, precision=Precision.FP16), 11) == tiny_fp16_onnx
    assert planned_onnx(EngineOptions(onnx=tiny_fp32_onnx), 11) == tiny_fp32_onnx


def test_esc_node_names(tiny_plugin_onnx: Path, tiny_fp32_onnx: Path) -> None:
    assert esc_node_names(tiny_plugin_onnx) == ["attn0"]
    assert esc_node_names(tiny_fp32_onnx) == []


@pytest.mark.parametrize(
    ("nodes", "layers", "missing"),
    [
        (["a0", "a1"], ["a0", "a1"], []),  # every node became a plugin layer of its name
        (["a0", "a1"], [], ["a0", "a1"]),  # function bodies: no plugin layer at all
        (["a0", "a1"], ["a1"], ["a0"]),
        (["", ""], ["ESCWindowAttention_0", "ESCWindowAttention_1"], []),  # unnamed nodes: counted
        (["a0", "a1"], ["a0", "renamed"], []),
        (["a0", "a1", "a2"], ["a2"], ["a0", "a1"]),
        ([], ["other_plugin"], []),
    ],
)
def test_unplugged_nodes(nodes: list[str], layers: list[str], missing: list[str]) -> None:
    assert unplugged_nodes(nodes, layers) == missing


def test_check_plugin_layers_message(tmp_path: Path) -> None:
    check_plugin_layers(["a0"], ["a0"], tmp_path / "lib.so")
    with pytest.raises(MissingDependencyError) as info:
        check_plugin_layers(["a0", "a1", "a2", "a3"], [], tmp_path / "lib.so")
    message = str(info.value)
    assert message.startswith(f"4 of 4 {plugin_contract.OP_TYPE} nodes ('a0', 'a1', 'a2', ...) were built")
    assert "from their ONNX function body instead of the plugin" in message
    assert f"{plugin_contract.OP_TYPE} v{plugin_contract.PLUGIN_VERSION}" in message and "\n" not in message


def test_sha256_file(stand_in_plugin: Path) -> None:
    import hashlib

    assert sha256_file(stand_in_plugin) == hashlib.sha256(stand_in_plugin.read_bytes()).hexdigest()
