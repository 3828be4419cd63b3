"""What a report records about the machine: CPU, GPU, driver, CUDA and library versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def nvidia_driver() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else None


def machine_info() -> dict[str, Any]:
    """Plain JSON values; GPU fields are None where there is no CUDA device."""
    import torch

    from esc_deploy.export.trt.env import installed_runtime

    cuda = torch.cuda.is_available()
    trt = installed_runtime()
    info: dict[str, Any] = {
        "host": platform.node(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "onnx": _version("onnx"),
        "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"),
        "polygraphy": _version("polygraphy"),
        "tensorrt": trt.label if trt else None,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
        "cuda": torch.version.cuda if cuda else None,
        "driver": nvidia_driver() if cuda else None,
    }
    return info


def describe_machine(info: dict[str, Any]) -> str:
    """One line: 'CPU Intel ... (2 cores); no GPU; torch 2.13, onnxruntime 1.31, TensorRT -'."""
    gpu = (
        f"GPU {info['gpu']} ({info['gpu_memory_gib']} GiB), driver {info['driver']}, CUDA {info['cuda']}"
        if info.get("gpu")
        else "no GPU"
    )
    return (
        f"CPU {info['cpu']} ({info['cpu_count']} cores); {gpu}; torch {info['torch']}, "
        f"onnxruntime {info['onnxruntime']}, {info['tensorrt'] or 'TensorRT -'}"
    )
