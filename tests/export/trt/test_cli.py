"""build_engine.py's command line: flags -> options, the trtexec line, one-line errors with exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from esc_deploy.export.trt.cli import build_parser, main, options_from_args
from esc_deploy.export.trt.env import Flavour, TrtRuntime, TrtVersion, installed_runtime
from esc_deploy.export.trt.options import EngineOptions, Precision
from esc_deploy.export.trt.trtexec import trtexec_args

TRT10 = TrtRuntime(Flavour.TENSORRT, TrtVersion(10, 13, 0), "10.13.0.35")
TRT11 = TrtRuntime(Flavour.TENSORRT, TrtVersion(11, 4, 0), "11.4.0.106")
RTX = TrtRuntime(Flavour.TENSORRT_RTX, TrtVersion(1, 7, 1), "1.7.1.116")

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "export" / "build_engine.py"


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    """As a user runs it: `python export/build_engine.py ...` (sys.path[0] is export/)."""
    env = {**os.environ, "PYTHONPATH": ""}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )


def parse(*argv: str) -> EngineOptions:
    return options_from_args(build_parser().parse_args(list(argv)))


def test_defaults_come_from_the_options_dataclass() -> None:
    assert parse() == EngineOptions()


def test_flags_map_to_options(tmp_path: Path) -> None:
    options = parse(
        "--onnx", str(tmp_path / "m.onnx"), "--fp16", "--plugin", str(tmp_path / "p.so"),
        "--min-shape", "1x3x32x32", "--opt-shape", "1x3x64x64", "--max-shape", "2x3x128x128",
        "--workspace-gb", "2", "--timing-cache", str(tmp_path / "t.cache"),
        "--output", str(tmp_path / "e.engine"),
    )  # fmt: skip
    assert options.onnx == tmp_path / "m.onnx"
    assert options.precision is Precision.FP16
    assert options.plugin == tmp_path / "p.so"
    assert options.profile.as_dict() == {"min": "1x3x32x32", "opt": "1x3x64x64", "max": "2x3x128x128"}
    assert options.workspace_gb == 2.0
    assert options.timing_cache == tmp_path / "t.cache"
    assert options.output == tmp_path / "e.engine"
    assert parse("--no-plugin").plugin is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--min-shape", "1x3x64"], "expected an NCHW shape like 1x3x64x64"),
        (["--max-shape", "1x3x32x32"], "profile height: expected min <= opt <= max"),
        (["--opt-shape", "1x1x360x640"], "expected 3 channels"),
        (["--workspace-gb", "0"], "workspace: expected a positive number"),
    ],
)
def test_bad_values_are_one_line_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--output", str(tmp_path / "e.engine")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_argparse_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--plugin", "x.so", "--no-plugin"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "not allowed with argument" in err and err.count("\n") == 1


def test_missing_onnx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--onnx", str(tmp_path / "none.onnx"), "--output", str(tmp_path / "e.engine")]) == 2
    err = capsys.readouterr().err
    assert "none.onnx not found: export it with `python export/to_onnx.py`" in err and err.count("\n") == 1


def test_missing_plugin(tmp_path: Path, tiny_fp32_onnx: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --attention auto would take TensorRT's path; asking for the plugin makes its library required.
    engine = tmp_path / "e.engine"
    args = ["--onnx", str(tiny_fp32_onnx), "--plugin", str(tmp_path / "none.so"), "--output", str(engine)]
    assert main([*args, "--attention", "plugin"]) == 2
    err = capsys.readouterr().err
    assert "plugin library" in err and "none.so not found" in err and err.count("\n") == 1
    assert not engine.exists()


def test_trtexec_args_10x_fp16(tmp_path: Path) -> None:
    options = parse(
        "--onnx", "m.onnx", "--fp16", "--plugin", "p.so", "--workspace-gb", "2", "--timing-cache", "t.cache",
    )  # fmt: skip
    args = trtexec_args(options, runtime=TRT10, engine=Path("e.engine"), onnx_for_build=Path("m.onnx"))
    assert args[:3] == ["trtexec", "--onnx=m.onnx", "--saveEngine=e.engine"]
    assert {"--fp16", "--precisionConstraints=obey"} <= set(args)
    assert "--stronglyTyped" not in args
    assert {
        "--minShapes=input:1x3x64x64",
        "--optShapes=input:1x3x360x640",
        "--maxShapes=input:1x3x1080x1920",
        "--memPoolSize=workspace:2048M",
        "--timingCacheFile=t.cache",
        "--staticPlugins=p.so",
    } <= set(args)


def test_trtexec_args_11x_and_fp32() -> None:
    options = parse("--onnx", "m.onnx", "--fp16", "--no-plugin")
    args = trtexec_args(options, runtime=TRT11, engine=Path("e.engine"), onnx_for_build=Path("m.fp16.onnx"))
    assert "--onnx=m.fp16.onnx" in args and "--stronglyTyped" in args and "--fp16" not in args
    assert not any(a.startswith(("--staticPlugins", "--memPoolSize", "--timingCacheFile")) for a in args)
    fp32 = trtexec_args(parse("--onnx", "m.onnx"), runtime=TRT10, engine=Path("e"), onnx_for_build=Path("m.onnx"))
    assert "--fp16" not in fp32 and "--stronglyTyped" not in fp32


def test_trtexec_args_rtx() -> None:
    """tensorrt_rtx: the RTX tool, strongly typed without a flag for it, never the weak-typing flags."""
    options = parse("--onnx", "m.onnx", "--fp16", "--plugin", "p.so", "--runtime", "tensorrt-rtx")
    args = trtexec_args(options, runtime=RTX, engine=Path("e.engine"), onnx_for_build=Path("m.fp16.onnx"))
    assert args[:2] == ["tensorrt_rtx", "--onnx=m.fp16.onnx"]
    assert not {"--fp16", "--stronglyTyped", "--precisionConstraints=obey"} & set(args)
    assert "--staticPlugins=p.so" in args


def test_runtime_and_compute_capability_flags() -> None:
    options = parse("--runtime", "tensorrt-rtx", "--compute-capability", "8.6, 8.9,12.0")
    assert options.runtime == "tensorrt-rtx" and options.compute_capabilities == ("8.6", "8.9", "12.0")
    assert parse().runtime == "auto" and parse().compute_capabilities is None


def test_print_trtexec_script_11x_converts_fp32(tiny_fp32_onnx: Path, tmp_path: Path) -> None:
    engine = tmp_path / "out" / "e.engine"
    result = run_script(
        "--onnx", str(tiny_fp32_onnx), "--fp16", "--print-trtexec", "--trt-major", "11", "--output", str(engine)
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert f"--saveEngine={engine}" in line
    assert line.startswith("trtexec ") and "--stronglyTyped" in line
    assert f"--onnx={tiny_fp32_onnx.with_name('tiny.fp16.onnx')}" in line
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx"]  # printing writes nothing


def test_print_trtexec_script_11x_keeps_fp16(tiny_fp16_onnx: Path) -> None:
    result = run_script(
        "--onnx", str(tiny_fp16_onnx), "--fp16", "--print-trtexec", "--trt-major", "11", "--output", "e.engine"
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"--onnx={tiny_fp16_onnx} " in result.stdout


def test_print_trtexec_script_default_model() -> None:
    """Works without TensorRT, a GPU or the exported files: pure string work."""
    result = run_script("--fp16", "--print-trtexec", "--output", "engines/x.engine")
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert "--saveEngine=engines/x.engine" in line and "--minShapes=input:1x3x64x64" in line
    assert "--staticPlugins=" in line and "libesc_trt_plugin.so" in line


@pytest.mark.skipif(installed_runtime("tensorrt") is not None, reason="TensorRT is installed here")
def test_missing_tensorrt_is_one_line(tiny_fp32_onnx: Path, tmp_path: Path) -> None:
    engine = tmp_path / "out" / "e.engine"
    result = run_script("--onnx", str(tiny_fp32_onnx), "--no-plugin", "--runtime", "tensorrt", "--output", str(engine))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "TensorRT is not installed" in line and "pip install -e .[tensorrt]" in line
    assert not (tmp_path / "out").exists()


def test_compute_capability_needs_tensorrt_for_rtx(tiny_fp32_onnx: Path, tmp_path: Path) -> None:
    """TensorRT builds for the GPU it runs on; only TensorRT for RTX takes targets."""
    from esc_deploy.export.trt.build import resolve_target

    with pytest.raises(ValueError, match="compute capabilities are a TensorRT for RTX setting"):
        resolve_target(TRT10, ("8.6",))
    with pytest.raises(ValueError, match=r"compute capability 9\.0 is not a target of TensorRT for RTX"):
        resolve_target(RTX, ("9.0",))
    target = resolve_target(RTX, ("8.9", "8.6", "8.9"))
    assert target.gpu is None and target.compute_capabilities == ("8.9", "8.6")


@pytest.mark.tensorrt_rtx
def test_print_trtexec_saves_where_the_build_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Without --output the line names the very file the build then writes (hashes, runtime, target)."""
    import shlex

    from esc_deploy.export.trt import options as engine_options
    from tests.export.trt.sidecars import write_stand_in_onnx

    onnx = write_stand_in_onnx(tmp_path / "stand_in.onnx")
    monkeypatch.setattr(engine_options, "OUTPUT_DIR", tmp_path / "out")
    args = ["--onnx", str(onnx), "--no-plugin", "--runtime", "tensorrt-rtx", "--compute-capability", "8.9",
            "--min-shape", "1x3x32x32", "--opt-shape", "1x3x64x64", "--max-shape", "1x3x96x96"]  # fmt: skip
    assert main([*args, "--print-trtexec"]) == 0
    printed = capsys.readouterr()
    assert not (tmp_path / "out").exists()  # printing writes nothing
    assert main([*args, "--no-progress"]) == 0
    (engine,) = (tmp_path / "out").glob("*.engine")
    assert f"--saveEngine={engine}" in shlex.split(printed.out)
    assert f"note: {engine} is the path" in printed.err


@pytest.mark.skipif(installed_runtime("tensorrt") is not None, reason="TensorRT is installed here")
def test_print_trtexec_without_the_runtime_needs_output(tiny_fp32_onnx: Path) -> None:
    """The default name holds the runtime's version: without that runtime no path is printed that the build
    would not write."""
    result = run_script("--onnx", str(tiny_fp32_onnx), "--runtime", "tensorrt", "--print-trtexec")
    assert result.returncode == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and "pass --output PATH" in line
