"""Which TensorRT runs here, and what each flavour supports: against the real TensorRT for RTX bindings where
a fact can be read from them, and the real import machinery where a runtime is absent."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from esc_deploy.export.trt.env import (
    RTX_COMPUTE_CAPABILITIES,
    Flavour,
    MissingDependencyError,
    TrtVersion,
    check_version,
    require_runtime,
)


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("10.13.0.35", TrtVersion(10, 13, 0)),
        ("10.8.0.43.post1", TrtVersion(10, 8, 0)),
        ("11.2", TrtVersion(11, 2, 0)),
        ("1.7.1.116", TrtVersion(1, 7, 1)),
    ],
)
def test_version_strings_of_released_wheels(text: str, version: TrtVersion) -> None:
    assert TrtVersion.parse(text) == version
    assert TrtVersion(10, 8, 0) < TrtVersion(10, 13, 0) < TrtVersion(11, 0, 0)  # numeric, not text order


@pytest.mark.parametrize(
    ("flavour", "text", "supported"),
    [
        (Flavour.TENSORRT, "8.6.1", False),
        (Flavour.TENSORRT, "10.16.0.72", True),
        (Flavour.TENSORRT, "11.4.0.106", True),
        (Flavour.TENSORRT, "12.0.0", False),
        (Flavour.TENSORRT_RTX, "1.7.1.116", True),
        (Flavour.TENSORRT_RTX, "2.0.0", False),
        (Flavour.TENSORRT, "ten", False),
    ],
)
def test_supported_versions(flavour: Flavour, text: str, supported: bool) -> None:
    if supported:
        assert check_version(flavour, text) == TrtVersion.parse(text)
    else:
        with pytest.raises(MissingDependencyError, match=r"not supported|unreadable version") as info:
            check_version(flavour, text)
        assert "\n" not in str(info.value) and "pip install" in str(info.value)


@pytest.mark.parametrize(("module", "choice"), [("tensorrt", "tensorrt"), ("tensorrt_rtx_bindings", "tensorrt-rtx")])
def test_require_runtime_when_import_fails(monkeypatch: pytest.MonkeyPatch, module: str, choice: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import <module>` raises ImportError
    with pytest.raises(MissingDependencyError, match=rf"not installed .*pip install -e \.\[{choice}\]"):
        require_runtime(choice)  # type: ignore[arg-type]


def test_a_stubs_only_tensorrt_folder_is_not_a_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What type stubs on the path give: a `tensorrt` folder of .pyi files, imported as an empty namespace."""
    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.pyi").write_text("class Builder: ...\n")
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingDependencyError, match="found only type stubs or an empty package") as info:
        require_runtime("tensorrt")
    assert str(tmp_path / "tensorrt") in str(info.value)


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


@pytest.mark.tensorrt_rtx
def test_rtx_facts_match_the_real_bindings() -> None:
    """Each fact the build relies on, read from TensorRT for RTX itself."""
    import tensorrt_rtx_bindings as trt

    rt = require_runtime("tensorrt-rtx")
    targets = {name for name in trt.ComputeCapability.__members__ if name.startswith("SM")}
    assert {"SM" + cc.replace(".", "") for cc in rt.target_compute_capabilities} == targets
    assert rt.target_compute_capabilities == RTX_COMPUTE_CAPABILITIES and rt.builds_ahead_of_time
    # strongly typed only: no fp16 builder flag, and strong typing is the only network flag
    assert rt.strongly_typed_only and not hasattr(trt.BuilderFlag, "FP16")
    assert set(trt.NetworkDefinitionCreationFlag.__members__) == {"STRONGLY_TYPED"}
    assert rt.has_plugin_override_flag and hasattr(trt.OnnxParserFlag, "ENABLE_PLUGIN_OVERRIDE")
    assert rt.tag == f"rtx{trt.__version__}"
