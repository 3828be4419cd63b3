"""validation/triton_bench.py's bookkeeping (the benchmark itself is run by hand: docs/serving.md)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from esc_deploy.validation.bench.serving_load import BEGIN, END, BenchOptions, parse_args, run_clients, write_report


def test_run_clients_spreads_requests_and_runs_them_concurrently() -> None:
    """Each client's first call waits until all four are inside a call at once: clients run one after another
    (or fewer threads than asked) break the barrier, and run_clients raises; no sleep, no timing."""
    all_inside = threading.Barrier(4, timeout=30)
    calls: dict[str, int] = {}
    lock = threading.Lock()

    def call(_: np.ndarray) -> None:
        name = threading.current_thread().name
        with lock:
            calls[name] = calls.get(name, 0) + 1
            first = calls[name] == 1
        if first:
            all_inside.wait()

    wall, latencies = run_clients(call, 4, 10, np.zeros(1))
    assert sorted(calls.values()) == [2, 2, 3, 3]  # 10 requests spread over 4 clients
    assert len(latencies) == 10 and all(latency >= 0 for latency in latencies) and wall > 0


def test_report_section_is_replaced(tmp_path: Path) -> None:
    doc = tmp_path / "serving.md"
    doc.write_text(f"# Serving\n\ntext\n\n{BEGIN}\nold\n{END}\n\nafter\n")
    write_report(doc, f"{BEGIN}\nnew\n{END}\n")
    assert doc.read_text() == f"# Serving\n\ntext\n\n{BEGIN}\nnew\n{END}\n\nafter\n"
    fresh = tmp_path / "fresh.md"
    write_report(fresh, f"{BEGIN}\nnew\n{END}\n")
    assert fresh.read_text().strip() == f"{BEGIN}\nnew\n{END}"


def test_options() -> None:
    options = parse_args(["--clients", "1,2", "--requests", "3", "--no-report"])
    assert options.clients == (1, 2) and options.requests == 3 and options.report is None
    with pytest.raises(ValueError, match="--requests"):
        BenchOptions(requests=0)
    with pytest.raises(SystemExit):
        parse_args(["--clients", "one"])
