"""The one way this project opens an ONNX Runtime session (export, calibration, parity, benchmarks).

Errors-only logging, and no CPU memory arena by default: an arena per session grows with each new
input shape and keeps its peak for the life of the process, which the calibration's large input and
the parity run's many sizes would turn into gigabytes held for nothing.

Sessions that run one shape many times (upscale's tiles, benchmarks) take the arena, without ONNX Runtime's
memory pattern. The pattern plans one block for a whole run after the first run at a shape; with the arena that
is a second copy of the peak, and its first use pays the page faults. Measured on ESC-light x4 at 180x320, 2 threads
(2-core EPYC VM, onnxruntime 1.32): arena and pattern 5.0 GiB peak RSS, second run 5.8-7.4 s, then 2.33 s
(median of 8, interleaved); arena without pattern 2.6 GiB, every run from the second 2.33 s; no arena 2.9 GiB
and 3.3 s (pattern) or 6.3 s (none) per run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx
    import onnxruntime

CPU = ("CPUExecutionProvider",)
_default_threads: int | None = None


def set_default_threads(threads: int | None) -> None:
    """The intra-op threads of this process's sessions that do not ask for a number (None: ONNX Runtime's
    default, one per physical core), as ``torch.set_num_threads``. For processes that share the cores (pytest -n 2):
    ONNX Runtime's idle threads spin on a core the other process needs. Measured on ESC-light at 96x128 with the
    other core busy: 2 threads 6.6 s and 9.1 s of CPU for six runs, 1 thread 6.2 s and 6.1 s."""
    global _default_threads
    _default_threads = threads


def ort_session(
    model: onnx.ModelProto | Path | str,
    *,
    providers: Sequence[str] = CPU,
    arena: bool = False,
    priority_order: bool = False,
    threads: int | None = None,
) -> onnxruntime.InferenceSession:
    """``arena``: keep freed buffers for the next run (and no memory pattern; see above), for repeated runs.
    ``priority_order``: run each node as soon as its inputs exist. The default order may run a
    value's extra consumers (the calibration's probes) late and keep every activation alive until
    then: 2.7 GiB instead of 1.1 GiB for ESC-light at 128x128, 24 GiB and killed at 347x617.
    ``threads``: intra-op threads (None: set_default_threads's number, else ONNX Runtime's default)."""
    import onnxruntime as ort

    threads = _default_threads if threads is None else threads

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    options.enable_cpu_mem_arena = arena
    options.enable_mem_pattern = not arena  # with the arena, the pattern's block only doubles the peak
    if threads is not None:
        options.intra_op_num_threads = threads
    if priority_order:
        options.execution_order = ort.ExecutionOrder.PRIORITY_BASED
    source = str(model) if isinstance(model, Path | str) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=list(providers))
