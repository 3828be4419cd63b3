"""Load on the image model of a local Triton server: photographs of mixed sizes, every answer checked.

    python validation/triton_image_bench.py                    # exports the default model if needed
    python validation/triton_image_bench.py --seconds 20 --clients 1,4,16 --report docs/serving.md

One run: `make_triton_repo` on the ONNX file (the ``<name>_python`` tensor model and the ``<name>_image``
model calling it), PyTriton's tritonserver (serving/local_server.py), then for each number of concurrent
clients (threads, one connection each) a fixed time during which each client sends real photographs
(scikit-image's, at mixed sizes) one after the other. Every answer is compared with what
``esc-deploy upscale`` gives for the same photograph (esc_deploy.runtime: ONNX Runtime on the CPU, the
same tile plan): it must be identical in 8 bits; a mismatch or an error is counted and reported, never
hidden. Reported per case: images per second, p50 and p99 latency, and the server's own statistics of
the image model and of the tensor model (requests, executions, mean queue time). The report replaces
the section between the markers in ``--report``. A benchmark, not a test: nothing fails on slow numbers.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from esc_deploy.common.command import error, interrupted
from esc_deploy.common.defaults import DEFAULT_ONNX, DOCS_DIR
from esc_deploy.validation.bench.serving_load import ensure_onnx, write_report

BEGIN = "<!-- triton_image_bench: begin (written by validation/triton_image_bench.py) -->"
END = "<!-- triton_image_bench: end -->"
DEFAULT_REPORT = DOCS_DIR / "serving.md"
# (scikit-image photograph, height, width): mixed sizes, one to six tiles of a 96x96 tile.
REQUEST_TIMEOUT_S = 3600.0  # 16 clients queue for two CPU cores: minutes per image is expected
PHOTOS = (("astronaut", 96, 96), ("coffee", 120, 160), ("chelsea", 80, 120), ("rocket", 64, 96))


@dataclass(frozen=True)
class ImageBenchOptions:
    onnx: Path = DEFAULT_ONNX
    clients: tuple[int, ...] = (1, 4, 16)
    seconds: float = 10.0  # per case
    tile: int = 96  # the tensor model's largest input (ort_max_input)
    max_batch: int = 4
    queue_delay_us: int = 2000
    instances: int = 2  # of the image model: images tiled at once
    protocol: str = "http"
    report: Path | None = DEFAULT_REPORT

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ValueError(f"--seconds must be positive, got {self.seconds}")
        if not self.clients or min(self.clients) < 1:
            raise ValueError(f"--clients must be positive integers, got {self.clients}")
        if self.tile < 17:
            raise ValueError(f"--tile must be at least the model's minimum side 17, got {self.tile}")


@dataclass(frozen=True)
class ServerCounts:
    """One model's statistics from the server (differences between two reads)."""

    requests: int
    executions: int
    items: int  # inference_count: batch items (tiles, for the tensor model)
    queue_ms: float  # mean time a request waited in the queue

    @staticmethod
    def read(stats: dict[str, Any]) -> tuple[int, int, int, int]:
        success = stats["inference_stats"]["success"]
        queue = stats["inference_stats"]["queue"]
        return int(success["count"]), int(stats["execution_count"]), int(stats["inference_count"]), int(queue["ns"])

    @classmethod
    def between(cls, before: tuple[int, int, int, int], after: tuple[int, int, int, int]) -> ServerCounts:
        requests, executions, items, queue_ns = (a - b for a, b in zip(after, before, strict=True))
        return cls(requests, executions, items, queue_ns / max(requests, 1) / 1e6)


@dataclass(frozen=True)
class ImageCase:
    clients: int
    images: int  # answered and checked
    mismatches: int  # answers that differ from esc-deploy upscale
    errors: list[str]  # one line per failed request
    wall_s: float
    p50_ms: float
    p99_ms: float
    image_model: ServerCounts
    tensor_model: ServerCounts

    @property
    def throughput(self) -> float:
        return self.images / self.wall_s


@dataclass
class ImageBenchReport:
    options: ImageBenchOptions
    machine: dict[str, Any]
    server_version: str
    model: str
    tensor_model: str
    versions: dict[str, str]
    cases: list[ImageCase] = field(default_factory=list)


def load_photos() -> list[np.ndarray]:
    """The benchmark's photographs as HxWx3 uint8 (Lanczos-resized real photographs)."""
    from PIL import Image
    from skimage import data

    return [
        np.asarray(Image.fromarray(getattr(data, name)()).resize((w, h), Image.Resampling.LANCZOS))
        for name, h, w in PHOTOS
    ]


def expected_outputs(onnx: Path, photos: list[np.ndarray], options: ImageBenchOptions) -> list[np.ndarray]:
    """What esc-deploy upscale (esc_deploy.runtime, ONNX Runtime on the CPU) gives for each photograph."""
    from esc_deploy.runtime.facts import ModelFacts
    from esc_deploy.runtime.images import Picture, to_pil
    from esc_deploy.runtime.ort_runner import OrtRunner
    from esc_deploy.runtime.tiles import plan_tiles, upscale_array

    facts = ModelFacts.from_onnx(onnx)
    outputs = []
    with OrtRunner(onnx) as runner:
        for pixels in photos:
            colour = np.ascontiguousarray(pixels.astype(np.float32).transpose(2, 0, 1)[None] / 255.0)
            picture = Picture(colour, None, "RGB")
            plan = plan_tiles(facts, picture.size, max_tile=options.tile)
            planes = upscale_array(picture.planes(), runner, scale=facts.scale, plan=plan, min_hw=facts.min_hw)
            outputs.append(np.asarray(to_pil(picture.with_planes(planes))))
    return outputs


def run_case(
    make_client: Callable[[], Any],
    module: Any,
    model: str,
    clients: int,
    seconds: float,
    photos: list[np.ndarray],
    expected: list[np.ndarray],
) -> tuple[int, int, list[str], float, list[float]]:
    """``clients`` threads sending photographs until ``seconds`` have passed: (answered, mismatches,
    error lines, wall seconds until the last answer, latencies)."""
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    counts = [0, 0]
    barrier = threading.Barrier(clients)
    deadline: list[float] = []
    connections = [make_client() for _ in range(clients)]  # here: a failure must not leave the others waiting

    def client(index: int) -> None:
        connection = connections[index]
        barrier.wait()
        with lock:
            if not deadline:
                deadline.append(time.perf_counter() + seconds)
        k = index
        while time.perf_counter() < deadline[0]:
            i = k % len(photos)
            k += 1
            start = time.perf_counter()
            try:
                inp = module.InferInput("IMAGE", list(photos[i].shape), "UINT8")
                inp.set_data_from_numpy(photos[i])
                out = connection.infer(model, [inp]).as_numpy("IMAGE")
            except Exception as exc:  # tritonclient's errors: each request's own line in the report
                with lock:
                    errors.append(f"{PHOTOS[i][0]}: {' '.join(str(exc).split())}")
                continue
            elapsed = time.perf_counter() - start
            same = out is not None and np.array_equal(out, expected[i])
            with lock:
                latencies.append(elapsed)
                counts[0] += 1
                counts[1] += 0 if same else 1
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    return counts[0], counts[1], errors, wall, latencies


def run_image_benchmark(options: ImageBenchOptions, log: Callable[[str], None] = print) -> ImageBenchReport:
    import onnxruntime

    from esc_deploy.serving.local_server import LocalTriton
    from esc_deploy.serving.model_repository.writer import make_repository, spec_from_files
    from esc_deploy.validation.machine import machine_info

    onnx = ensure_onnx(options.onnx)
    photos = load_photos()
    expected = expected_outputs(onnx, photos, options)
    spec = spec_from_files(
        onnx=onnx,
        variants=("python",),
        ort_max_batch=options.max_batch,
        ort_max_input=(options.tile, options.tile),
        queue_delay_us=options.queue_delay_us,
        image_target="python",
        image_instances=options.instances,
    )
    tensor, image = spec.model_name("python"), spec.image_models[0]
    if options.protocol == "http":
        import tritonclient.http as module
    else:
        import tritonclient.grpc as module
    with tempfile.TemporaryDirectory(prefix="esc-triton-bench-") as tmp:
        repo = make_repository(spec, Path(tmp) / "repo").repo
        with LocalTriton(repo, models=[tensor, image], startup_timeout_s=300) as server:
            url = server.http_url if options.protocol == "http" else server.grpc_url
            admin = module.InferenceServerClient(url)

            def stats(name: str) -> tuple[int, int, int, int]:
                grpc = {"as_json": True} if options.protocol == "grpc" else {}
                (model_stats,) = admin.get_inference_statistics(name, **grpc)["model_stats"]
                return ServerCounts.read(model_stats)

            metadata = admin.get_server_metadata()
            version = metadata["version"] if isinstance(metadata, dict) else metadata.version
            report = ImageBenchReport(
                options=options,
                machine=machine_info(),
                server_version=str(version),
                model=image,
                tensor_model=tensor,
                versions={"onnxruntime": onnxruntime.__version__, "numpy": np.__version__},
            )

            def connect() -> Any:  # HTTP: tritonclient's own default gives up on a request after 60 s
                if options.protocol == "http":
                    return module.InferenceServerClient(url, connection_timeout=REQUEST_TIMEOUT_S,
                                                        network_timeout=REQUEST_TIMEOUT_S)  # fmt: skip
                return module.InferenceServerClient(url)

            run_case(connect, module, image, 1, 0.01, photos, expected)  # warm
            for clients in options.clients:
                before = (stats(image), stats(tensor))
                answered, mismatches, errors, wall, latencies = run_case(
                    connect, module, image, clients, options.seconds, photos, expected
                )
                after = (stats(image), stats(tensor))
                case = ImageCase(
                    clients=clients,
                    images=answered,
                    mismatches=mismatches,
                    errors=errors,
                    wall_s=wall,
                    p50_ms=float(np.percentile(latencies, 50)) * 1e3 if latencies else float("nan"),
                    p99_ms=float(np.percentile(latencies, 99)) * 1e3 if latencies else float("nan"),
                    image_model=ServerCounts.between(before[0], after[0]),
                    tensor_model=ServerCounts.between(before[1], after[1]),
                )
                report.cases.append(case)
                log(_line(case))
                for line in errors:
                    log(f"  failed request: {line}")
            admin.close()
    return report


def _line(case: ImageCase) -> str:
    t = case.tensor_model
    return (
        f"clients {case.clients:2d}: {case.throughput:6.2f} images/s, p50 {case.p50_ms:8.1f} ms, "
        f"p99 {case.p99_ms:8.1f} ms; {case.images} images checked, {case.mismatches} mismatches, "
        f"{len(case.errors)} errors; tensor model: {t.items} tiles in {t.requests} requests, "
        f"{t.executions} executions, queue {t.queue_ms:.1f} ms"
    )


def report_markdown(report: ImageBenchReport) -> str:
    from esc_deploy.validation.machine import describe_machine, load_note

    o, m = report.options, report.machine
    rows = [
        "| clients | images/s | p50 (ms) | p99 (ms) | images checked (mismatches, errors) | image model: "
        "requests / executions, queue (ms) | tensor model: tiles / requests / executions, queue (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in report.cases:
        i, t = c.image_model, c.tensor_model
        rows.append(
            f"| {c.clients} | {c.throughput:.2f} | {c.p50_ms:.0f} | {c.p99_ms:.0f} | {c.images} "
            f"({c.mismatches}, {len(c.errors)}) | {i.requests} / {i.executions}, {i.queue_ms:.0f} | "
            f"{t.items} / {t.requests} / {t.executions}, {t.queue_ms:.0f} |"
        )
    sizes = ", ".join(f"{name} {w}x{h}" for name, h, w in PHOTOS)
    lines = [
        BEGIN,
        f"Measured {time.strftime('%Y-%m-%d')} by `python validation/triton_image_bench.py` on "
        f"{describe_machine(m)} ({load_note()}); "
        f"Python {m['python']}, numpy {report.versions['numpy']}, onnxruntime {report.versions['onnxruntime']}, "
        f"tritonserver {report.server_version} (nvidia-pytriton's), protocol {o.protocol}.",
        "",
        f"Model `{report.model}` (BLS) calling `{report.tensor_model}` ({o.onnx.name}, ONNX Runtime on the CPU "
        f"in the Python backend, tile {o.tile}x{o.tile}, max_batch_size {o.max_batch}, max_queue_delay "
        f"{o.queue_delay_us} µs, one instance; the image model has {o.instances} instances). Photographs "
        f"({sizes}; scikit-image) sent as UINT8 pixels, in turn, for {o.seconds:g} s per case; every answer "
        "compared with `esc-deploy upscale` (esc_deploy.runtime, ONNX Runtime on the CPU, the same tile plan) "
        "and counted a mismatch unless identical in 8 bits.",
        "",
        *rows,
    ]
    failures = [f"{c.clients} clients: {line}" for c in report.cases for line in c.errors]
    if failures:
        lines += ["", "Failed requests (one line each):", "", *(f"- {line}" for line in failures)]
    lines.append(END)
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> ImageBenchOptions:
    from esc_deploy.common.command import ArgumentParser

    d = ImageBenchOptions()
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", type=Path, default=d.onnx, help="exported model (default: the built-in one)")
    parser.add_argument("--clients", default=",".join(map(str, d.clients)), help="concurrent clients per case")
    parser.add_argument("--seconds", type=float, default=d.seconds, help=f"time per case ({d.seconds:g} s)")
    parser.add_argument("--tile", type=int, default=d.tile, help=f"tensor model's largest input ({d.tile})")
    parser.add_argument("--max-batch", type=int, default=d.max_batch, help="max_batch_size of the tensor model")
    parser.add_argument("--queue-delay-us", type=int, default=d.queue_delay_us, help="dynamic batching delay")
    parser.add_argument("--instances", type=int, default=d.instances, help="image model instances")
    parser.add_argument("--protocol", choices=("http", "grpc"), default=d.protocol)
    parser.add_argument("--report", type=Path, default=d.report, help="markdown file whose section is replaced")
    parser.add_argument("--no-report", action="store_true", help="print only")
    args = parser.parse_args(argv)
    try:
        clients = tuple(int(c) for c in args.clients.split(","))
    except ValueError:
        parser.error(f"--clients: expected comma-separated integers, got {args.clients!r}")
    return ImageBenchOptions(
        onnx=args.onnx,
        clients=clients,
        seconds=args.seconds,
        tile=args.tile,
        max_batch=args.max_batch,
        queue_delay_us=args.queue_delay_us,
        instances=args.instances,
        protocol=args.protocol,
        report=None if args.no_report else args.report,
    )


def main(argv: list[str] | None = None) -> int:
    from tritonclient.utils import InferenceServerException

    from esc_deploy.serving.local_server import TritonServerError

    try:
        options = parse_args(argv)
        report = run_image_benchmark(options)
    except (ValueError, OSError, TritonServerError) as exc:
        return error(str(exc))
    except KeyboardInterrupt:
        return interrupted()
    except InferenceServerException as exc:  # the server went away mid-run (its statistics, say)
        return error(f"the server failed: {exc}")
    section = report_markdown(report)
    print(section)
    if options.report is not None:
        write_report(options.report, section, begin=BEGIN, end=END)
        print(f"wrote the report into {options.report}")
    return 0
