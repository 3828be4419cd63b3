"""Shared fixtures and the skip rules for hardware-bound markers (cuda, nvcc, tensorrt)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

DATA_DIR = Path(__file__).parent / "data"
GOLDEN_DIR = DATA_DIR / "golden"
GOLDEN_NAMES = ("tiny_x2", "tiny_x2_b2", "light_x4", "fp_x4", "real_x4")


def _skip_reasons() -> dict[str, str | None]:
    from export.engine_env import installed_runtime  # not find_spec: tensorrt-stubs alone imports

    cuda = torch.cuda.is_available()
    trt_missing = [
        what for what, ok in (("no TensorRT runtime is installed", installed_runtime()), ("no CUDA device", cuda)) if not ok
    ]
    return {
        "cuda": None if cuda else "needs a CUDA device; none is available here",
        "nvcc": None if shutil.which("nvcc") else "needs the CUDA compiler nvcc on PATH",
        "tensorrt": "needs TensorRT and a CUDA GPU: " + ", ".join(trt_missing) if trt_missing else None,
    }


if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # one worker per core (pytest -n 2 on the 2-core CI machine)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reasons = _skip_reasons()
    for item in items:
        # Tests that export a golden checkpoint run on one xdist worker (--dist loadgroup), so that
        # the session-wide ExportCache exports each checkpoint once.
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("name") if callspec else None
        if "exports" in getattr(item, "fixturenames", ()) and name in GOLDEN_NAMES:
            item.add_marker(pytest.mark.xdist_group(name))
        for marker, reason in reasons.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return GOLDEN_DIR


def load_golden(name: str) -> dict:
    """{'arch', 'kwargs', 'input', 'output'} computed by the official code (tests/data/golden/README.md)."""
    return torch.load(GOLDEN_DIR / f"{name}.io.pt", weights_only=True)


class ExportCache:
    """ONNX exports are the slow part of the suite (5-40 s each on 2 cores): export each once."""

    def __init__(self) -> None:
        self._protos: dict[tuple[str, str, int], object] = {}

    def model(self, name: str):  # -> esc.ESCBase
        import esc

        if name == "default":
            from export.onnx_cli import default_model

            return default_model()
        return esc.load_model(GOLDEN_DIR / f"{name}.pth", attention="naive")

    def proto(self, name: str, attention: str = "plugin", opset: int = 18):  # -> onnx.ModelProto
        key = (name, attention, opset)
        if key not in self._protos:
            from export.cli import quiet_exporter_logs
            from export.onnx_export import OnnxExportOptions, to_onnx_proto

            quiet_exporter_logs()
            options = OnnxExportOptions(attention=attention, opset=opset)  # type: ignore[arg-type]
            self._protos[key] = to_onnx_proto(self.model(name), options)
        return self._protos[key]


@pytest.fixture(scope="session")
def exports() -> ExportCache:
    return ExportCache()
