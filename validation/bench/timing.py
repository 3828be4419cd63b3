"""Running a prepared case: warm-up, timed runs, and the measure of one case alone.

Timing rule: a run is ``ready(fn())``, the backend's call and the step that waits for its output
(CUDA launches return before their kernels finish); every timer here times both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from esc_deploy.validation.bench.memory import PeakWatch
from esc_deploy.validation.bench.prepare import Device, Prepared


def run_once(prepared: Prepared) -> None:
    """One run, returned from only when its output is ready: what the timers time."""
    prepared.ready(prepared.fn())


def warm_up(prepared: Prepared, runs: int) -> None:
    for _ in range(runs):
        run_once(prepared)


@dataclass
class Timed:
    times_ms: list[float]
    start_s: list[float]  # when each run began, seconds after the caller's origin (perf_counter)


def timed_runs(
    prepared: Prepared,
    *,
    runs: int,
    device: Device,
    origin: float,
    on_run: Callable[[], object] = lambda: None,
) -> Timed:
    """``runs`` runs, each timed by CUDA events on a GPU, else by time.perf_counter."""
    import torch

    timed = Timed([], [])
    for _ in range(runs):
        timed.start_s.append(time.perf_counter() - origin)
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            # The readiness step sits inside the events: they order only with the current stream's work,
            # the step covers any stream (at the cost of one host round trip, microseconds, per run).
            start.record()
            run_once(prepared)
            end.record()
            end.synchronize()
            timed.times_ms.append(float(start.elapsed_time(end)))
        else:
            t0 = time.perf_counter()
            run_once(prepared)
            timed.times_ms.append((time.perf_counter() - t0) * 1000)
        on_run()
    return timed


@dataclass
class Measured:
    timed: Timed
    peak_mib: float  # CUDA allocator peak or peak RSS over the timed runs
    before_mib: float | None  # CPU: resident memory when the timed runs began
    memory_kind: str


def measure(
    prepared: Prepared,
    *,
    runs: int,
    warmup: int,
    device: Device,
    progress: bool = False,
    desc: str = "",
    origin: float | None = None,
) -> Measured:
    """One case alone (the paper's protocol): warm-up, then ``runs`` timed runs, memory over them."""
    from tqdm import tqdm

    origin = time.perf_counter() if origin is None else origin
    watch = PeakWatch(device)
    warm_up(prepared, warmup)
    watch.start()
    with tqdm(total=runs, desc=desc, disable=not progress, leave=False) as bar:
        timed = timed_runs(prepared, runs=runs, device=device, origin=origin, on_run=bar.update)
    return Measured(timed, watch.peak_mib(), watch.before_mib, watch.kind)


def memory_pass(prepared: Prepared, *, warmup: int, device: Device) -> Measured:
    """An interleaved case's memory, measured alone before the rounds: warm-up, then one untimed run."""
    watch = PeakWatch(device)
    warm_up(prepared, warmup)
    watch.start()
    run_once(prepared)
    return Measured(Timed([], []), watch.peak_mib(), watch.before_mib, watch.kind)
