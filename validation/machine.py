"""What a report records about the machine: CPU, GPU, driver, CUDA and library versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import subprocess
import threading
from pathlib import Path
from types import TracebackType
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


def nvidia_smi_query(fields: str, gpu: int | str = 0) -> list[str] | None:
    """The comma-separated values of nvidia-smi's ``--query-gpu=FIELDS`` for one GPU (its index or UUID), or None
    where it fails."""
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits", "-i", str(gpu)],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return [value.strip() for value in out.splitlines()[0].split(",")] if out else None


def nvidia_driver() -> str | None:
    values = nvidia_smi_query("driver_version")
    return values[0] if values else None


def sm_clock_mhz(gpu: int | str = 0) -> float | None:
    """The SM clock nvidia-smi reads now. Idle it is far below the boost clock (an H200 here: 345 MHz idle, 1980
    just after work), so a throughput floor needs a reading taken under load: see SmClockSampler."""
    values = nvidia_smi_query("clocks.sm", gpu)
    try:
        return float(values[0]) if values else None
    except ValueError:
        return None


class SmClockSampler:
    """Reads the SM clock every ``period`` seconds on a thread while its ``with`` block runs (work on the GPU).

    ``median`` is the clock the work ran at, for a floor in clocks; None where no reading succeeded."""

    def __init__(self, period: float = 0.25, gpu: int | str = 0) -> None:
        self.period = period
        self.gpu = gpu
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            clock = sm_clock_mhz(self.gpu)
            if clock is None:
                return  # nvidia-smi cannot read it here: no samples rather than a stream of failing processes
            self.samples.append(clock)
            self._stop.wait(self.period)

    def __enter__(self) -> SmClockSampler:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    def describe(self) -> str:
        if not self.samples:
            return "not read (nvidia-smi gave no SM clock)"
        return (
            f"{self.median:.0f} MHz, median of {len(self.samples)} nvidia-smi readings while the work ran "
            f"(min {min(self.samples):.0f}, max {max(self.samples):.0f})"
        )


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


def load_note() -> str:
    """The load average at the end of a benchmark, and what it says: a benchmark keeps about one core busy,
    so a load above the core count means other work shared the machine (its figures are indicative)."""
    loads = os.getloadavg()
    shared = loads[0] > (os.cpu_count() or 1)
    said = "the machine was shared with other work while it ran" if shared else "no other heavy work ran"
    return f"load average at the end {', '.join(f'{v:.1f}' for v in loads)}: {said}"
