"""Logic around TensorRT that needs none: versions, fp16 detection, the plugin-layer check."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from esc_deploy.export import plugin_contract
from esc_deploy.export.trt.env import Flavour, MissingDependencyError, TrtRuntime, TrtVersion, require_runtime
from esc_deploy.export.trt.files import sha256_file
from esc_deploy.export.trt.fp16 import NetworkTyping, is_fp16_mixed, network_typing, planned_onnx
from esc_deploy.export.trt.options import EngineOptions, Precision
from esc_deploy.export.trt.plugin import check_plugin_layers, esc_node_names, unplugged_nodes


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("10.13.0.35", TrtVersion(10, 13, 0)),
        ("10.8.0.43.post1", TrtVersion(10, 8, 0)),
        ("11.0.0", TrtVersion(11, 0, 0)),
        ("11.2", TrtVersion(11, 2, 0)),
        ("1.7.1.116", TrtVersion(1, 7, 1)),
    ],
)
def test_trt_version_parse(text: str, version: TrtVersion) -> None:
    assert TrtVersion.parse(text) == version


def test_trt_version_order_and_errors() -> None:
    assert TrtVersion(10, 8, 0) < TrtVersion(10, 13, 0) < TrtVersion(11, 0, 0)
    with pytest.raises(ValueError, match="expected a TensorRT version"):
        TrtVersion.parse("ten")


def runtime(flavour: Flavour, text: str) -> TrtRuntime:
    return TrtRuntime(flavour, TrtVersion.parse(text), text)


@pytest.mark.parametrize(
    ("flavour", "text", "strong", "aot", "plugin_major", "tool"),
    [
        (Flavour.TENSORRT, "10.13.0.35", False, False, 10, "trtexec"),
        (Flavour.TENSORRT, "11.4.0.106", True, False, 11, "trtexec"),
        (Flavour.TENSORRT_RTX, "1.7.1.116", True, True, 11, "tensorrt_rtx"),
    ],
)
def test_what_each_flavour_supports(
    flavour: Flavour, text: str, strong: bool, aot: bool, plugin_major: int, tool: str
) -> None:
    rt = runtime(flavour, text)
    assert rt.strongly_typed_only is strong
    assert network_typing(rt) is (NetworkTyping.STRONG if strong else NetworkTyping.WEAK)
    assert rt.builds_ahead_of_time is aot and bool(rt.target_compute_capabilities) is aot
    assert rt.plugin_abi_major == plugin_major and rt.trtexec == tool
    assert rt.has_plugin_override_flag is (text != "10.13.0.35")  # from 10.15 on


@pytest.mark.parametrize(("module", "choice"), [("tensorrt", "tensorrt"), ("tensorrt_rtx_bindings", "tensorrt-rtx")])
def test_require_runtime_when_import_fails(monkeypatch: pytest.MonkeyPatch, module: str, choice: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import <module>` raises ImportError
    with pytest.raises(MissingDependencyError, match=rf"not installed .*pip install -e \.\[{choice}\]"):
        require_runtime(choice)  # type: ignore[arg-type]


def test_require_runtime_with_only_stubs(monkeypatch: pytest.MonkeyPatch) -> None:
    """What tensorrt-stubs alone gives: `import tensorrt` succeeds, with nothing inside."""
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    with pytest.raises(MissingDependencyError, match="found only type stubs or an empty package"):
        require_runtime("tensorrt")


def test_require_runtime_refuses_unsupported_majors(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("tensorrt")
    fake.__version__ = "8.6.1"  # type: ignore[attr-defined]
    fake.Builder = object  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    with pytest.raises(
        MissingDependencyError, match=r"TensorRT 8\.6\.1 is not supported \(this project needs 10\.x or 11\.x\)"
    ):
        require_runtime("tensorrt")


def test_auto_names_why_neither_runtime_is_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setitem(sys.modules, "tensorrt_rtx_bindings", None)
    with pytest.raises(
        MissingDependencyError,
        match=r"no TensorRT runtime is usable: TensorRT is not installed.*; TensorRT for RTX is not",
    ):
        require_runtime("auto")


@pytest.mark.tensorrt_rtx
def test_auto_takes_rtx_where_tensorrt_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorrt_rtx_bindings

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    rt = require_runtime("auto")
    assert rt.flavour is Flavour.TENSORRT_RTX and rt.version_text == tensorrt_rtx_bindings.__version__


def test_fp16_detection(tiny_fp32_onnx: Path, tiny_fp16_onnx: Path) -> None:
    assert not is_fp16_mixed(tiny_fp32_onnx)
    assert is_fp16_mixed(tiny_fp16_onnx)


def test_planned_onnx(tiny_fp32_onnx: Path, tiny_fp16_onnx: Path) -> None:
    fp16 = EngineOptions(onnx=tiny_fp32_onnx, precision=Precision.FP16)
    weak, strong = NetworkTyping.WEAK, NetworkTyping.STRONG
    assert planned_onnx(fp16, weak) == tiny_fp32_onnx
    assert planned_onnx(fp16, strong) == tiny_fp32_onnx.with_name("tiny.fp16.onnx")
    assert planned_onnx(EngineOptions(onnx=tiny_fp16_onnx, precision=Precision.FP16), strong) == tiny_fp16_onnx
    assert planned_onnx(EngineOptions(onnx=tiny_fp32_onnx), strong) == tiny_fp32_onnx


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
