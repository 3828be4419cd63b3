"""TensorRT callback objects for a build: a file logger and a tqdm progress monitor.

TensorRT calls back into Python through subclasses of its own interfaces, and each flavour's module
(`tensorrt`, `tensorrt_rtx_bindings`) has its own `ILogger` and `IProgressMonitor`. The behaviour is
written once here, in plain classes; `logger_for` and `progress_monitor_for` mix it into the interface
of the module in use.
"""

from __future__ import annotations

import functools
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from tqdm import tqdm


class _FileLogging:
    """Every message to the build log; warnings and errors also to stderr (above the progress bars)."""

    def _setup(self, path: Path, echo: Any, keep: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._keep = keep
        self.path = path
        self._echo = echo
        self._lock = threading.Lock()
        self._file: TextIO = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def log(self, severity: Any, msg: str) -> None:
        if severity > self._keep:
            return
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


class _TqdmProgress:
    """One tqdm bar per active builder phase, nested by depth. TensorRT may call from several threads."""

    def _setup(self) -> None:
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


@functools.cache
def _logger_class(trt: ModuleType) -> type:
    class FileLogger(_FileLogging, trt.ILogger):  # type: ignore[name-defined]
        def __init__(self, path: Path, echo: Any, keep: Any) -> None:
            trt.ILogger.__init__(self)
            self._setup(path, echo, keep)

    return FileLogger


@functools.cache
def _monitor_class(trt: ModuleType) -> type:
    class TqdmProgressMonitor(_TqdmProgress, trt.IProgressMonitor):  # type: ignore[name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._setup()

    return TqdmProgressMonitor


def logger_for(trt: ModuleType, path: Path, *, verbose: bool = False) -> Any:
    """A logger of `trt`'s flavour writing to `path`; with `verbose`, the builder's per-layer messages too."""
    severity = trt.ILogger.Severity
    return _logger_class(trt)(path, severity.WARNING, severity.VERBOSE if verbose else severity.INFO)


def progress_monitor_for(trt: ModuleType) -> Any:
    return _monitor_class(trt)()
