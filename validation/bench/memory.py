"""Peak memory of a benchmark case: the CUDA allocator's peak, or the CPU's peak RSS (/proc's VmHWM, reset
per case, else getrusage)."""

from __future__ import annotations

from pathlib import Path


class CpuPeakMemory:
    """Peak resident set size: /proc/self/status VmHWM, reset through clear_refs; else getrusage."""

    def __init__(self) -> None:
        self.resettable = self._reset()

    @staticmethod
    def _reset() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return _vm_hwm_kib() is not None
        except OSError:
            return False

    def start(self) -> None:
        if self.resettable:
            self._reset()

    def peak_mib(self) -> float:
        if self.resettable:
            value = _vm_hwm_kib()
            if value is not None:
                return value / 1024
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    @property
    def kind(self) -> str:
        return "peak RSS (VmHWM, reset per case)" if self.resettable else "peak RSS of the process (getrusage)"


def _proc_status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _vm_hwm_kib() -> int | None:
    return _proc_status_kib("VmHWM")


def vm_rss_kib() -> int | None:
    return _proc_status_kib("VmRSS")


class PeakWatch:
    """A case's peak memory from start() on: the CUDA allocator's peak, or the CPU's peak RSS."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.cpu = CpuPeakMemory() if device == "cpu" else None
        self.before_mib: float | None = None  # CPU: resident memory at start()

    def start(self) -> None:
        if self.cpu is None:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return
        self.cpu.start()
        before = vm_rss_kib()
        self.before_mib = None if before is None else before / 1024

    def peak_mib(self) -> float:
        if self.cpu is None:
            import torch

            return torch.cuda.max_memory_allocated() / 2**20
        return self.cpu.peak_mib()

    @property
    def kind(self) -> str:
        return "torch.cuda.max_memory_allocated" if self.cpu is None else self.cpu.kind
