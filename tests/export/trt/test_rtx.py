"""Real engines from the real TensorRT for RTX builder, on a machine without a GPU.

`python export/build_engine.py --fp16 --runtime tensorrt-rtx` builds ESC-light x4 (the default model) from
its plugin ONNX (with the plugin built from engines/plugin against TensorRT 11.x headers) and from its
native ONNX. TensorRT for RTX builds ahead of time for chosen compute capabilities; nothing is deserialized
(that needs a GPU), so the layer checks read the builder's DETAILED layer report from the build log.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import onnx
import pytest

from esc_deploy.export.trt.layer_log import EngineLayer, engine_layers
from esc_deploy.export.trt.options import build_log_path, sidecar_path
from esc_deploy.export.trt.plugin import esc_node_names
from esc_deploy.export.trt.sidecar import EngineSidecar
from tests.conftest import REPO

# With the other tests of the default model's exports (tests/conftest.py): one export per graph.
pytestmark = [pytest.mark.tensorrt_rtx, pytest.mark.xdist_group("default")]

SCRIPT = REPO / "export" / "build_engine.py"
TARGETS = ("8.6", "8.9")


@pytest.fixture(scope="module")
def default_onnx(exports, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The default model (ESC-light x4) exported with the plugin node and with native attention."""
    out = tmp_path_factory.mktemp("rtx_onnx")
    paths = {}
    for attention in ("plugin", "native"):
        paths[attention] = out / f"esc-light_x4_{attention}.onnx"
        onnx.save(exports.proto("default", attention), str(paths[attention]))
    return paths


def build(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        # Calibration (minutes on a CPU) is shown by tests/export/onnx_graph/test_calibration.py; the default
        # model has no value over the limit, so its calibrated and uncalibrated fp16 graphs are the same.
        [sys.executable, str(SCRIPT), "--fp16", "--runtime", "tensorrt-rtx", "--calibration", "off", "--no-progress",
         *args],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def plugin_engine(default_onnx: dict[str, Path], trt11_plugin: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    engine = tmp_path_factory.mktemp("rtx_plugin") / "plugin_fp16.engine"
    result = build("--onnx", str(default_onnx["plugin"]), "--plugin", str(trt11_plugin),
                   "--compute-capability", ",".join(TARGETS), "--output", str(engine))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"attention: plugin (auto: plugin library {trt11_plugin} found)" in result.stderr.splitlines()
    print(result.stdout.strip())
    return engine


@pytest.fixture(scope="module")
def native_engine(default_onnx: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    engine = tmp_path_factory.mktemp("rtx_native") / "native_fp16.engine"
    result = build("--onnx", str(default_onnx["native"]), "--no-plugin", "--output", str(engine))
    assert result.returncode == 0, result.stderr
    print(result.stdout.strip())
    return engine


def layers_of(engine: Path) -> list[EngineLayer]:
    layers = engine_layers(build_log_path(engine).read_text().splitlines())
    assert layers, f"no DETAILED layer report in {build_log_path(engine)}"
    return layers


def test_plugin_engine_and_its_sidecar(plugin_engine: Path, default_onnx: dict[str, Path], trt11_plugin: Path) -> None:
    import tensorrt_rtx_bindings

    from esc_deploy.common.defaults import default_model

    assert plugin_engine.stat().st_size > 1_000_000
    sidecar = EngineSidecar.read(plugin_engine)
    assert sidecar.runtime.value == "tensorrt-rtx"
    assert sidecar.runtime_version == tensorrt_rtx_bindings.__version__
    assert sidecar.target.gpu is None and sidecar.target.compute_capabilities == TARGETS
    assert sidecar.network_typing == "strong" and sidecar.precision.value == "fp16"
    assert sidecar.model == default_model().config  # from the ONNX metadata, not from the user
    assert sidecar.plugin is not None and Path(sidecar.plugin.path) == trt11_plugin.resolve()
    assert sidecar.built_onnx.path.endswith(".fp16.onnx")
    # The default model: nothing kept float32 for accuracy, most nodes fp16.
    assert sidecar.fp16 is not None and sidecar.fp16["fp32_units_by_accuracy"] == []
    assert sidecar.fp16["fp16_node_share"] > 0.9
    assert 0 < sidecar.build_seconds < 300
    print(f"plugin engine: {plugin_engine.stat().st_size / 2**20:.1f} MiB, built in {sidecar.build_seconds:.1f} s")


def test_one_plugin_layer_per_block_with_half_qkv_and_float_table(plugin_engine: Path) -> None:
    sidecar = EngineSidecar.read(plugin_engine)
    nodes = esc_node_names(Path(sidecar.built_onnx.path))
    assert len(nodes) == sidecar.model.n_blocks == 3
    assert list(sidecar.plugin_layers) == nodes  # every node a plugin layer: no inlined function body
    assert sidecar.attention == "plugin" and sidecar.fused_attention_blocks == 3
    assert [(b.block, b.onnx_node, b.implementation) for b in sidecar.attention_blocks] == [
        (f"blocks.{i}", node, "plugin") for i, node in enumerate(nodes)
    ]
    plugins = [layer for layer in layers_of(plugin_engine) if layer.kind == "custom_layer"]
    assert sorted(node for layer in plugins for node in layer.onnx_nodes) == sorted(nodes)
    for layer in plugins:
        assert [t.dtype for t in layer.inputs] == ["Half"], layer  # qkv
        assert [t.dtype for t in layer.constants] == ["Float"], layer  # the position-bias table
        assert "relative_position_bias" in layer.constants[0].name
        assert [t.dtype for t in layer.outputs] == ["Half"], layer


def test_convolutions_run_in_half(plugin_engine: Path, native_engine: Path) -> None:
    for engine in (plugin_engine, native_engine):
        convolutions = [layer for layer in layers_of(engine) if layer.kind == "correlation"]
        assert len(convolutions) > 50
        dtypes = Counter(t.dtype for layer in convolutions for t in layer.inputs)
        assert set(dtypes) == {"Half"}, dtypes


def test_native_engine_has_no_plugin_layer(native_engine: Path) -> None:
    sidecar = EngineSidecar.read(native_engine)
    assert sidecar.plugin is None and sidecar.plugin_layers == ()
    assert not [layer for layer in layers_of(native_engine) if layer.kind == "custom_layer"]
    print(f"native engine: {native_engine.stat().st_size / 2**20:.1f} MiB, built in {sidecar.build_seconds:.1f} s")


def test_print_trtexec_names_tensorrt_rtx(default_onnx: dict[str, Path], trt11_plugin: Path) -> None:
    # The engine's default name hashes the plugin too, so the plugin must exist.
    result = build("--onnx", str(default_onnx["plugin"]), "--plugin", str(trt11_plugin), "--print-trtexec",
                   "--compute-capability", "8.9")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("tensorrt_rtx --onnx=") and "--fp16" not in result.stdout
    assert "compute capabilities 8.9" in result.stderr


def write_onnx_without_metadata(path: Path) -> Path:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])],
        "plain",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, "H", "W"])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


BAD_INPUTS = {
    "missing ONNX": (lambda d, t, p10: ["--onnx", str(t / "none.onnx"), "--no-plugin"], "not found"),
    "corrupt ONNX": (
        lambda d, t, p10: ["--onnx", str(_write(t / "bad.onnx", b"\x08\x07garbage" * 50)), "--no-plugin"],
        "is not a readable ONNX file",
    ),
    "corrupt ONNX, no plugin either (the ONNX is checked first)": (
        lambda d, t, p10: [
            *("--onnx", str(_write(t / "bad.onnx", b"\x08\x07garbage" * 50))),
            *("--attention", "plugin", "--plugin", str(t / "none.so")),
        ],
        "is not a readable ONNX file",
    ),
    "ONNX without esc.config": (
        lambda d, t, p10: ["--onnx", str(write_onnx_without_metadata(t / "plain.onnx")), "--no-plugin"],
        "has no 'esc.config' metadata",
    ),
    "plugin of the wrong major": (
        lambda d, t, p10: ["--onnx", str(d["plugin"]), "--plugin", str(p10)],
        "was built with TensorRT 10.x headers; TensorRT for RTX 1.7.1.116 needs one built with TensorRT 11.x",
    ),
    "plugin that is not a shared library": (
        lambda d, t, p10: ["--onnx", str(d["plugin"]), "--plugin", str(_write(t / "libfake.so", b"not ELF\n"))],
        "is not a shared library",
    ),
    "unknown compute capability": (
        lambda d, t, p10: ["--onnx", str(d["native"]), "--no-plugin", "--compute-capability", "8.6,9.0"],
        "compute capability 9.0 is not a target of TensorRT for RTX",
    ),
    "profile below the minimum side": (
        lambda d, t, p10: ["--onnx", str(d["native"]), "--no-plugin", "--min-shape", "1x3x16x64"],
        "profile minimum side 16 is below the model's minimum input side 17",
    ),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    case: str, default_onnx: dict[str, Path], trt10_plugin: Path, tmp_path: Path
) -> None:
    make_args, message = BAD_INPUTS[case]
    out = tmp_path / "out"
    engine = out / "e.engine"
    result = build(*make_args(default_onnx, tmp_path, trt10_plugin), "--output", str(engine))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]
    assert not engine.exists() and not sidecar_path(engine).exists()
    assert not out.exists() or not any(out.iterdir())


def test_sidecar_round_trip_and_strict_reading(plugin_engine: Path, tmp_path: Path) -> None:
    import json

    sidecar = EngineSidecar.read(plugin_engine)
    data = sidecar.to_json()
    assert EngineSidecar.from_json(json.loads(json.dumps(data)), "copy") == sidecar
    engine = tmp_path / "x.engine"
    with pytest.raises(ValueError, match="no sidecar"):
        EngineSidecar.read(engine)
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(ValueError, match="is not readable JSON"):
        EngineSidecar.read(engine)
    for broken, message in (
        ({**data, "format": 1}, "expected sidecar format 4, found 1"),
        ({k: v for k, v in data.items() if k != "model"}, r"missing \['model'\]"),
        ({**data, "surprise": 1}, r"extra \['surprise'\]"),
        ({**data, "runtime": "tensorrt-lean"}, "malformed sidecar"),
        ({**data, "model": {**data["model"], "window_size": "32"}}, "invalid ESC config"),
        ({**data, "profile": {"min": "1x3x64", "opt": "1x3x64x64", "max": "1x3x64x64"}}, "malformed sidecar"),
    ):
        sidecar_path(engine).write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=message):
            EngineSidecar.read(engine)


def test_compatibility_problems(plugin_engine: Path) -> None:
    import dataclasses

    from esc_deploy.export.trt.env import Flavour

    sidecar = EngineSidecar.read(plugin_engine)
    assert sidecar.plugin is not None
    here = {"runtime": sidecar.runtime, "runtime_version": sidecar.runtime_version}
    good = sidecar.plugin.sha256
    assert sidecar.compatibility_problems(**here, plugin_sha256=good) == []
    [problem] = sidecar.compatibility_problems(
        runtime=Flavour.TENSORRT, runtime_version="11.4.0.106", plugin_sha256=good
    )
    assert f"built with tensorrt-rtx {sidecar.runtime_version}, tensorrt 11.4.0.106 is loaded" in problem
    [problem] = sidecar.compatibility_problems(**here, plugin_sha256="f" * 64)
    assert f"built with plugin sha256 {good[:12]}, the loaded library has ffffffffffff" in problem
    [problem] = sidecar.compatibility_problems(**here, plugin_sha256=None)
    assert "no plugin library is loaded" in problem
    older = dataclasses.replace(sidecar, plugin=dataclasses.replace(sidecar.plugin, version="0"))
    [problem] = older.compatibility_problems(**here, plugin_sha256=good)
    assert "built for plugin version 0" in problem


def test_runner_takes_the_plugin_from_the_sidecar(plugin_engine: Path, native_engine: Path, tmp_path: Path) -> None:
    from esc_deploy.runtime.engine import plugin_for

    sidecar = EngineSidecar.read(plugin_engine)
    assert sidecar.plugin is not None
    assert plugin_for(sidecar, None) == Path(sidecar.plugin.path)
    assert plugin_for(sidecar, tmp_path / "y.so") == tmp_path / "y.so"
    assert plugin_for(EngineSidecar.read(native_engine), None) is None


@pytest.mark.parametrize(
    ("compiler", "message"), [("/nonexistent/cc", "cannot run the C compiler"), ("false", "could not compile")]
)
def test_unversioned_library_without_a_compiler_is_one_line(
    compiler: str, message: str, default_onnx: dict[str, Path], trt11_plugin: Path, tmp_path: Path
) -> None:
    """A fresh cache and no working C compiler: the link library cannot be made, and the build says so."""
    import os

    engine = tmp_path / "out" / "e.engine"
    env = {**os.environ, "ESC_DEPLOY_CACHE": str(tmp_path / "cache"), "CC": compiler}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--fp16", "--runtime", "tensorrt-rtx", "--no-progress",
         "--onnx", str(default_onnx["plugin"]), "--plugin", str(trt11_plugin), "--output", str(engine)],
        capture_output=True, text=True, cwd=REPO, timeout=600, env=env,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line and "libtensorrt_rtx.so" in line
    assert not engine.exists() and not sidecar_path(engine).exists()


def test_unversioned_library_is_made_once_in_the_cache(default_onnx: dict[str, Path], tmp_path: Path) -> None:
    """The link library lands in the cache folder (not in site-packages) and carries the unversioned soname."""
    import os

    import tensorrt_rtx_bindings

    cache = tmp_path / "cache"
    result = subprocess.run(
        [sys.executable, "-c", "import tensorrt_rtx_bindings; from esc_deploy.export.trt.rtx_library import "
         "ensure_unversioned_library as e; e(tensorrt_rtx_bindings.__version__); e(tensorrt_rtx_bindings.__version__)"],
        capture_output=True, text=True, cwd=REPO, timeout=120, env={**os.environ, "ESC_DEPLOY_CACHE": str(cache)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [library] = cache.rglob("libtensorrt_rtx.so")
    assert library.parent.name == f"tensorrt-rtx-{tensorrt_rtx_bindings.__version__}"
    dynamic = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True, check=True).stdout
    assert "Library soname: [libtensorrt_rtx.so]" in dynamic and "Shared library: [libtensorrt_rtx.so." in dynamic
