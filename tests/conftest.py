"""Shared fixtures and the skip rules for hardware-bound markers (cuda, nvcc, tensorrt)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import torch

DATA_DIR = Path(__file__).parent / "data"
GOLDEN_DIR = DATA_DIR / "golden"
GOLDEN_NAMES = ("tiny_x2", "tiny_x2_b2", "light_x4", "fp_x4", "real_x4")


def _skip_reasons() -> dict[str, str | None]:
    cuda = torch.cuda.is_available()
    has_trt = importlib.util.find_spec("tensorrt") is not None
    return {
        "cuda": None if cuda else "needs a CUDA device; none is available here",
        "nvcc": None if shutil.which("nvcc") else "needs the CUDA compiler nvcc on PATH",
        "tensorrt": None
        if (cuda and has_trt)
        else (
            "needs TensorRT and a CUDA GPU: "
            + ("no CUDA device" if not cuda else "tensorrt is not installed")
        ),
    }


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reasons = _skip_reasons()
    for item in items:
        for marker, reason in reasons.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return GOLDEN_DIR


def load_golden(name: str) -> dict:
    """{'arch', 'kwargs', 'input', 'output'} computed by the official code (tests/data/golden/README.md)."""
    return torch.load(GOLDEN_DIR / f"{name}.io.pt", weights_only=True)
