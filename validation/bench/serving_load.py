"""Throughput and latency of the Python-backend model on a local Triton server, against ONNX Runtime in-process.

    python validation/triton_bench.py                       # exports the default model if needed
    python validation/triton_bench.py --onnx build/esc-light_x4.onnx --requests 32 --report docs/serving.md

One run: `make_triton_repo` on the ONNX file (the ``<name>_python`` variant), PyTriton's tritonserver
(serving/triton_server.py), then for 1, 4 and 16 concurrent clients (threads, one connection each)
the same number of requests of one 256x256 image each, and the same work through one ONNX Runtime
session in this process from as many threads, one call at a time (the server runs one instance).
Reported per case: throughput (images/s), and the median (p50) and p99 latency of one request; each
case runs ``--repeats`` times and the report gives the median over repeats. The report replaces the
section between the markers in ``--report``. This is a benchmark, not a test: nothing fails on slow numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from esc_deploy.common.command import error
from esc_deploy.common.defaults import DEFAULT_ONNX, DOCS_DIR

BEGIN = "<!-- triton_bench: begin (written by validation/triton_bench.py) -->"
END = "<!-- triton_bench: end -->"
DEFAULT_REPORT = DOCS_DIR / "serving.md"


@dataclass(frozen=True)
class BenchOptions:
    onnx: Path = DEFAULT_ONNX
    size: int = 256
    clients: tuple[int, ...] = (1, 4, 16)
    requests: int = 16  # per case, shared among the clients
    warmup: int = 2  # untimed requests per runner, before its first case
    repeats: int = 3
    max_batch: int = 2  # serving/model_repository/writer.py's default for the ONNX Runtime variants
    queue_delay_us: int = 1000
    protocol: str = "http"
    report: Path | None = DEFAULT_REPORT

    def __post_init__(self) -> None:
        if self.size < 17:
            raise ValueError(f"--size must be at least the model's minimum side, got {self.size}")
        if self.warmup < 0:
            raise ValueError(f"--warmup must be >= 0, got {self.warmup}")
        for label, value in (("--requests", self.requests), ("--repeats", self.repeats)):
            if value < 1:
                raise ValueError(f"{label} must be positive, got {value}")
        if not self.clients or min(self.clients) < 1:
            raise ValueError(f"--clients must be positive integers, got {self.clients}")


@dataclass(frozen=True)
class CaseResult:
    runner: str  # "triton (python backend)" or "onnxruntime in-process"
    clients: int
    requests: int
    throughput: float  # images per second, median over repeats
    p50_ms: float
    p99_ms: float
    executions: int | None = None  # server-side batch executions in the last repeat (Triton only)


@dataclass
class BenchReport:
    options: BenchOptions
    machine: dict[str, Any]
    server_version: str
    model: str
    cases: list[CaseResult] = field(default_factory=list)


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def run_clients(
    call: Callable[[np.ndarray], Any], clients: int, requests: int, image: np.ndarray
) -> tuple[float, list[float]]:
    """``requests`` calls spread over ``clients`` threads started together: (wall seconds, latencies)."""
    per_client = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)

    def client(count: int) -> None:
        try:
            barrier.wait()
            for _ in range(count):
                start = time.perf_counter()
                call(image)
                with lock:
                    latencies.append(time.perf_counter() - start)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=client, args=(n,)) for n in per_client]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return wall, latencies


def _case(runner: str, clients: int, runs: list[tuple[float, list[float]]], executions: int | None) -> CaseResult:
    requests = len(runs[0][1])
    return CaseResult(
        runner=runner,
        clients=clients,
        requests=requests,
        throughput=statistics.median(requests / wall for wall, _ in runs),
        p50_ms=statistics.median(_percentile(lat, 50) for _, lat in runs) * 1e3,
        p99_ms=statistics.median(_percentile(lat, 99) for _, lat in runs) * 1e3,
        executions=executions,
    )


def ensure_onnx(path: Path) -> Path:
    if path.is_file():
        return path
    if path != DEFAULT_ONNX:
        raise ValueError(f"ONNX file {path} not found: export it with `python export/to_onnx.py`")
    from esc_deploy.common.defaults import default_model
    from esc_deploy.export.onnx_graph.exporter import export_onnx

    print(f"exporting the default model to {path}", flush=True)
    export_onnx(default_model(), path)
    return path


def run_benchmark(options: BenchOptions, log: Callable[[str], None] = print) -> BenchReport:
    """Every case, Triton first, then ONNX Runtime in-process on the same image and counts."""
    from esc_deploy.export.onnx_graph.ort_session import ort_session
    from esc_deploy.runtime.triton import connect
    from esc_deploy.serving.local_server import LocalTriton
    from esc_deploy.serving.model_repository.writer import make_repository, spec_from_files
    from esc_deploy.validation.machine import machine_info

    onnx = ensure_onnx(options.onnx)
    image = np.random.default_rng(0).random((1, 3, options.size, options.size), dtype=np.float32)
    side = max(options.size, 17)
    spec = spec_from_files(
        onnx=onnx,
        variants=("python",),
        ort_max_batch=options.max_batch,
        ort_max_input=(side, side),
        queue_delay_us=options.queue_delay_us,
    )
    model = spec.model_name("python")
    with tempfile.TemporaryDirectory(prefix="esc-triton-bench-") as tmp:
        repo = make_repository(spec, Path(tmp) / "repo").repo
        with LocalTriton(repo, models=[model], startup_timeout_s=300) as server:
            url = server.http_url if options.protocol == "http" else server.grpc_url
            upscaler = connect(url, model, options.protocol, timeout_s=3600)  # type: ignore[arg-type]
            metadata = upscaler.client.get_server_metadata()
            version = metadata["version"] if isinstance(metadata, dict) else metadata.version
            report = BenchReport(options=options, machine=machine_info(), server_version=str(version), model=model)
            run_clients(upscaler, 1, options.warmup, image)
            for clients in options.clients:
                runs = []
                for _ in range(options.repeats):
                    before = upscaler.statistics()
                    runs.append(run_clients(upscaler, clients, options.requests, image))
                after = upscaler.statistics()
                executions = after["execution_count"] - before["execution_count"]
                case = _case("triton, python backend", clients, runs, executions)
                report.cases.append(case)
                log(_line(case))
            upscaler.close()
    session = ort_session(onnx, arena=True)  # the served model's session options (arena, no memory pattern)
    names = (session.get_inputs()[0].name, session.get_outputs()[0].name)

    lock = threading.Lock()

    def ort(x: np.ndarray) -> Any:
        with lock:  # one call at a time, as the server's one instance (and 16 at once need 16x the memory)
            return session.run([names[1]], {names[0]: x})[0]

    run_clients(ort, 1, options.warmup, image)
    for clients in options.clients:
        runs = [run_clients(ort, clients, options.requests, image) for _ in range(options.repeats)]
        case = _case("onnxruntime in-process", clients, runs, None)
        report.cases.append(case)
        log(_line(case))
    return report


def _line(case: CaseResult) -> str:
    batches = f", {case.executions} executions" if case.executions is not None else ""
    return (
        f"{case.runner:24s} clients {case.clients:2d}: {case.throughput:6.2f} images/s, "
        f"p50 {case.p50_ms:8.1f} ms, p99 {case.p99_ms:8.1f} ms ({case.requests} requests{batches})"
    )


def report_markdown(report: BenchReport) -> str:
    from esc_deploy.validation.machine import describe_machine

    o, m = report.options, report.machine
    rows = [
        "| runner | clients | throughput (images/s) | p50 latency (ms) | p99 latency (ms) | server executions |",
        "|---|---|---|---|---|---|",
    ]
    for c in report.cases:
        executions = "-" if c.executions is None else f"{c.executions} for {c.requests} requests"
        rows.append(
            f"| {c.runner} | {c.clients} | {c.throughput:.2f} | {c.p50_ms:.0f} | {c.p99_ms:.0f} | {executions} |"
        )
    lines = [
        BEGIN,
        f"Measured {time.strftime('%Y-%m-%d')} by `python validation/triton_bench.py` on {describe_machine(m)}; "
        f"Python {m['python']}, numpy {np.__version__}, tritonserver {report.server_version} "
        f"(nvidia-pytriton's), protocol {o.protocol}.",
        "",
        f"Model `{report.model}` ({o.onnx.name}), input 1x3x{o.size}x{o.size} float32, one image per request; "
        f"max_batch_size {o.max_batch}, max_queue_delay {o.queue_delay_us} µs, one instance; {o.requests} "
        f"timed requests per case shared among the clients, after {o.warmup} untimed warm-up requests per runner; "
        f"medians over {o.repeats} repeats. ONNX Runtime in-process: one CPU session, the same requests from "
        "as many threads, one call at a time (as the server's single instance).",
        "",
        *rows,
        END,
    ]
    return "\n".join(lines) + "\n"


def write_report(path: Path, section: str) -> None:
    """Replace the marked section of ``path`` (append it when there is none)."""
    text = path.read_text() if path.is_file() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def parse_args(argv: list[str] | None = None) -> BenchOptions:
    from esc_deploy.common.command import ArgumentParser

    d = BenchOptions()
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", type=Path, default=d.onnx, help="exported model (default: the built-in one)")
    parser.add_argument("--size", type=int, default=d.size, help=f"input side (default {d.size})")
    parser.add_argument("--clients", default=",".join(map(str, d.clients)), help="concurrent clients per case")
    parser.add_argument("--requests", type=int, default=d.requests, help=f"timed requests per case ({d.requests})")
    parser.add_argument("--warmup", type=int, default=d.warmup, help=f"untimed requests per runner ({d.warmup})")
    parser.add_argument("--repeats", type=int, default=d.repeats, help=f"repeats per case, median ({d.repeats})")
    parser.add_argument("--max-batch", type=int, default=d.max_batch, help="max_batch_size of the model")
    parser.add_argument("--queue-delay-us", type=int, default=d.queue_delay_us, help="dynamic batching delay")
    parser.add_argument("--protocol", choices=("http", "grpc"), default=d.protocol)
    parser.add_argument("--report", type=Path, default=d.report, help="markdown file whose section is replaced")
    parser.add_argument("--no-report", action="store_true", help="print only")
    args = parser.parse_args(argv)
    try:
        clients = tuple(int(c) for c in args.clients.split(","))
    except ValueError:
        parser.error(f"--clients: expected comma-separated integers, got {args.clients!r}")
    return BenchOptions(
        onnx=args.onnx,
        size=args.size,
        clients=clients,
        requests=args.requests,
        warmup=args.warmup,
        repeats=args.repeats,
        max_batch=args.max_batch,
        queue_delay_us=args.queue_delay_us,
        protocol=args.protocol,
        report=None if args.no_report else args.report,
    )


def main(argv: list[str] | None = None) -> int:
    from esc_deploy.runtime.triton import TritonError
    from esc_deploy.serving.local_server import TritonServerError

    try:
        options = parse_args(argv)
        report = run_benchmark(options)
    except (ValueError, OSError, TritonError, TritonServerError) as exc:
        return error(str(exc))
    section = report_markdown(report)
    print(section)
    if options.report is not None:
        write_report(options.report, section)
        print(f"wrote the report into {options.report}")
    return 0
