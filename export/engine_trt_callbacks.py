"""TensorRT callback objects for a build: a file logger and a tqdm progress monitor.

This module imports tensorrt at the top because its classes derive from TensorRT's interfaces; it is
itself imported only inside functions, after `engine_env.require_tensorrt()` has passed.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TextIO

import tensorrt as trt
from tqdm import tqdm

Severity = trt.ILogger.Severity


class FileLogger(trt.ILogger):
    """Every message to the build log; warnings and errors also to stderr (above the progress bars)."""

    def __init__(self, path: Path, echo: trt.ILogger.Severity = Severity.WARNING) -> None:
        trt.ILogger.__init__(self)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._echo = echo
        self._lock = threading.Lock()
        self._file: TextIO = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
        line = f"[{severity.name}] {msg}"
        with self._lock:
            if not self._file.closed:
                self._file.write(line + "\n")
                self._file.flush()
        if severity <= self._echo:
            tqdm.write(f"TensorRT {line}", file=sys.stderr)

    def close(self) -> None:
        with self._lock:
            self._file.close()


class TqdmProgressMonitor(trt.IProgressMonitor):
    """One tqdm bar per active builder phase, nested by depth. TensorRT may call from several threads."""

    def __init__(self) -> None:
        trt.IProgressMonitor.__init__(self)
        self._bars: dict[str, tqdm] = {}
        self._lock = threading.Lock()

    def phase_start(self, phase_name: str, parent_phase: str, num_steps: int) -> None:
        with self._lock:
            self._bars[phase_name] = tqdm(
                total=num_steps,
                desc=phase_name,
                position=len(self._bars),
                leave=parent_phase is None,
                dynamic_ncols=True,
                file=sys.stderr,
            )

    def step_complete(self, phase_name: str, step: int) -> bool:
        with self._lock:
            bar = self._bars.get(phase_name)
            if bar is not None:
                bar.update(step + 1 - bar.n)
        return True  # never cancel the build

    def phase_finish(self, phase_name: str) -> None:
        with self._lock:
            bar = self._bars.pop(phase_name, None)
        if bar is not None:
            bar.close()

    def close(self) -> None:
        with self._lock:
            bars, self._bars = list(self._bars.values()), {}
        for bar in bars:
            bar.close()
