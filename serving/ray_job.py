"""esc-deploy upscale IN OUT --ray [ADDRESS]: the same job as a Ray Data pipeline, on one machine or a cluster.

Images: ``read_binary_files`` -> ``map_batches`` over an actor pool (``ImageActor``: one runner per actor, opened
from a ``RunnerSpec``; GPUs per actor where the cluster has any) -> the write step on the driver: the output
names are those of the local command (serving/upscale_jobs.py: no output over an input, no two inputs to one
output), each file is written atomically, and a file that arrives twice is an error, not a second write.

Videos: split into chunks of ``frames_per_task`` frames (a multiple of the frame batch, so that every runner
call carries the same frames as in a local run); ``VideoActor`` decodes its chunk (seeking to it) and upscales
it; the driver decodes the timing and audio itself and encodes the chunks in order (serving/video.py).

Results are the local run's, bit for bit in 8 bits: each image and each batch of frames goes through the
same runner and tile plan as locally. An actor that dies is restarted and its tasks retried, up to 3
times each (a model that crashes every actor ends the run instead of looping); each actor reports its peak
memory (resident set), collected in ``RayReport``.
Without an address a local Ray instance is started (``local_ray``: loopback only, no dashboard, its own session
folder) and stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from esc_deploy.common.files import atomic_write_bytes

if TYPE_CHECKING:
    from esc_deploy.runtime.tiles import TilePlan
    from esc_deploy.serving.upscale_media import RunnerSpec
    from esc_deploy.serving.video import VideoOptions

DEFAULT_FRAMES_PER_TASK = 32


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None or "": start a local instance
    actors: int | None = None  # None: one per GPU, else 1
    frames_per_task: int = DEFAULT_FRAMES_PER_TASK
    # torch threads per actor; None: the driver's own count, as a local run would use. On a CPU, oneDNN's
    # results depend on the thread count (a different split of the sums), so equal counts give equal bits.
    threads: int | None = None
    progress: bool = True


@dataclass
class RayReport:
    outputs: list[Path] = field(default_factory=list)
    actor_peak_mib: dict[int, float] = field(default_factory=dict)  # actor process id -> peak resident MiB
    actors: int = 0
    gpus_per_actor: float = 0.0
    seconds: float = 0.0

    def record(self, pid: int, peak_mib: float) -> None:
        self.actor_peak_mib[pid] = max(peak_mib, self.actor_peak_mib.get(pid, 0.0))

    def memory_line(self) -> str:
        peaks = ", ".join(f"pid {pid} {mib:.0f} MiB" for pid, mib in sorted(self.actor_peak_mib.items()))
        return f"Ray: {self.actors} actor(s), {self.gpus_per_actor:g} GPU each; peak memory per actor: {peaks}"


# ------------------------------------------------------------------------------------------------ the cluster


# Ray resolves 127.0.0.1 to the machine's routable address (so that other nodes can reach it) unless it runs as a
# single-node instance; Ray reads this at import, in the driver and in every process it starts.
LOOPBACK_ONLY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


@contextlib.contextmanager
def local_ray(num_cpus: int | None = None) -> Iterator[None]:
    """A Ray instance on this machine alone: every server binds 127.0.0.1 and talks over loopback, no dashboard,
    a fresh session folder; at the end the processes that appeared under this one while it ran (Ray's GCS, raylet
    and workers) are stopped by PID and the folder removed. RuntimeError where ray was imported before in cluster
    mode (it would use the routable address)."""
    os.environ.update(LOOPBACK_ONLY_ENV)
    import psutil  # the ray extra's (Ray itself only puts its vendored copy on the path once imported)
    import ray
    from ray._private import ray_constants

    if ray_constants.ENABLE_RAY_CLUSTER:
        raise RuntimeError(f"ray was imported before {LOOPBACK_ONLY_ENV} was set: it would not stay on loopback")
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    folder = tempfile.mkdtemp(prefix="esc-ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    try:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
                 _temp_dir=folder)  # fmt: skip
        yield
    finally:
        started = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        ray.shutdown()
        _, alive = psutil.wait_procs(started, timeout=30)  # workers exit a few seconds after the shutdown
        for process in alive:
            process.kill()
        psutil.wait_procs(alive, timeout=10)
        for _ in range(10):  # a process that was exiting may still have written a log file into it
            shutil.rmtree(folder, ignore_errors=True)
            if not os.path.exists(folder):
                break
            time.sleep(0.5)


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """The Ray this job runs on: one already initialised in this process (left running), the cluster at
    ``address`` (joined, then left), or else a ``local_ray``."""
    import sys

    running = sys.modules.get("ray")
    if running is not None and running.is_initialized():
        yield
    elif address:
        import ray

        ray.init(address=address, log_to_driver=False)
        try:
            yield
        finally:
            ray.shutdown()
    else:
        with local_ray():
            yield


def actor_threads(options: RayOptions) -> int:
    import torch

    return options.threads or torch.get_num_threads()


def pool_size(options: RayOptions) -> tuple[int, float, float]:
    """(actors, GPUs per actor, CPUs per actor) from the cluster's resources."""
    import ray

    resources = ray.cluster_resources()
    gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 1))
    actors = options.actors or (int(gpus) if gpus >= 1 else 1)
    if actors < 1:
        raise ValueError(f"actors must be positive, got {actors}")
    gpus_per_actor = min(1.0, gpus / actors) if gpus else 0.0
    # Ray's reservation per actor (the threads are actor_threads'): one CPU stays free for the read tasks that
    # feed the actors, which would otherwise wait for a CPU the actors hold for the whole run.
    cpus_per_actor = max(0.25, (cpus - 1) / actors)
    return actors, gpus_per_actor, cpus_per_actor


def actor_pool(spec: RunnerSpec, options: RayOptions) -> tuple[RayReport, dict[str, Any], dict[str, Any]]:
    """The report to fill, map_batches' pool arguments, and the constructor arguments every actor shares."""
    import ray.data

    actors, gpus, cpus = pool_size(options)
    # Bounded retries: Ray Data's default (without end) would retry an input that kills its actor forever.
    pool = {"batch_size": 1, "compute": ray.data.ActorPoolStrategy(size=actors), "num_cpus": cpus,
            "num_gpus": gpus or None, "max_restarts": 3, "max_task_retries": 3}  # fmt: skip
    shared = {"spec": spec.for_actor(gpus), "threads": actor_threads(options)}
    return RayReport(actors=actors, gpus_per_actor=gpus), pool, shared


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


class _Worker:
    """One runner per actor, opened once; torch keeps to the actor's CPUs."""

    def __init__(self, spec: RunnerSpec, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.runner = spec.open()
        self.pid = os.getpid()


class ImageActor(_Worker):
    def __init__(self, spec: RunnerSpec, threads: int, plans: dict[str, tuple[str, TilePlan]], quality: int) -> None:
        super().__init__(spec, threads)
        self.plans = plans  # input path -> (output suffix, tile plan)
        self.quality = quality

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths, data = [], []
        for raw, path in zip(batch["bytes"], batch["path"], strict=True):
            suffix, plan = self.plans[_key(path)]
            data.append(upscale_image_bytes(self.runner, bytes(raw), suffix, plan, self.quality))
            paths.append(path)
        n = len(paths)
        return {"path": np.array(paths), "data": np.array(data, dtype=object),
                "pid": np.full(n, self.pid), "peak_mib": np.full(n, _peak_mib())}  # fmt: skip


def upscale_image_bytes(runner: Any, raw: bytes, suffix: str, plan: TilePlan, quality: int) -> bytes:
    """An encoded image file in, the encoded output file out: the local command's computation and encoder."""
    from esc_deploy.runtime.images import encode_image, read_image
    from esc_deploy.runtime.tiles import upscale_array

    picture = read_image(io.BytesIO(raw))
    facts = runner.facts
    planes = upscale_array(picture.planes(), runner, scale=facts.scale, plan=plan, min_hw=facts.min_hw)
    return encode_image(
        picture.with_planes(planes), suffix, quality=quality
    )  # in memory: a killed actor leaves nothing


class VideoActor(_Worker):
    def __init__(self, spec: RunnerSpec, threads: int, source: str, options: VideoOptions) -> None:
        super().__init__(spec, threads)
        self.source = source
        self.options = options

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from esc_deploy.serving.video import upscale_frames

        out = []
        for index, first, count in zip(batch["index"], batch["first_pts"], batch["count"], strict=True):
            frames = decode_chunk(Path(self.source), int(first), int(count))
            step = self.options.batch
            upscaled = [upscale_frames(self.runner, frames[i : i + step], tile=self.options.tile,
                                       overlap=self.options.overlap) for i in range(0, len(frames), step)]  # fmt: skip
            out.append((int(index), np.concatenate(upscaled)))
        return {"index": np.array([i for i, _ in out]), "frames": [f for _, f in out],
                "pid": np.full(len(out), self.pid), "peak_mib": np.full(len(out), _peak_mib())}  # fmt: skip


def frame_timestamps(source: Path) -> list[int]:
    """Presentation timestamps of every frame of the first video stream, in order (demuxed, not decoded)."""
    from esc_deploy.serving.video import open_input

    with open_input(source) as container:
        stream = container.streams.video[0]
        stamps = [int(p.pts) for p in container.demux(stream) if p.size and p.pts is not None]
    return sorted(stamps)


def decode_chunk(source: Path, first_pts: int, count: int) -> np.ndarray:
    """``count`` RGB frames from the one at ``first_pts`` on: seek to the keyframe before it, decode forward."""
    from esc_deploy.serving.video import open_input

    with open_input(source) as container:
        stream = container.streams.video[0]
        container.seek(first_pts, stream=stream, backward=True, any_frame=False)
        frames = []
        for frame in container.decode(stream):
            if frame.pts is None or frame.pts < first_pts:
                continue
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    if len(frames) != count:
        raise RuntimeError(f"{source}: decoded {len(frames)} frames from pts {first_pts}, expected {count}")
    return np.stack(frames)


# ------------------------------------------------------------------------------------------------ the jobs


def _key(path: str | Path) -> str:
    return os.path.normcase(os.path.abspath(path))


def _ordered(context: Any) -> None:
    context.execution_options.preserve_order = True  # outputs in input order: video chunks are reassembled by it


def upscale_images(
    jobs: list[tuple[Path, Path, TilePlan]],
    spec: RunnerSpec,
    options: RayOptions,
    *,
    quality: int,
    on_output: Callable[[dict[str, Any]], None] | None = None,
) -> RayReport:
    """Each (input, output, tile plan) on the actor pool; outputs written atomically by the driver."""
    import ray.data

    report, pool, shared = actor_pool(spec, options)
    plans = {_key(src): (dst.suffix, plan) for src, dst, plan in jobs}
    targets = {_key(src): dst for src, dst, _ in jobs}
    started = time.perf_counter()
    _ordered(ray.data.DataContext.get_current())
    # One block per image: Ray Data's read would otherwise put small files into one block, which one actor
    # processes as one task (the other actors idle, and an output arrives only when the whole block is done).
    dataset = ray.data.read_binary_files([str(src) for src, _, _ in jobs], include_paths=True,
                                         override_num_blocks=len(jobs))  # fmt: skip
    results = dataset.map_batches(
        ImageActor, fn_constructor_kwargs={**shared, "plans": plans, "quality": quality}, **pool
    )
    written: set[str] = set()
    for row in results.iter_rows():
        key = _key(row["path"])
        if key in written:
            raise RuntimeError(f"{row['path']} came back twice from the actors")
        target = targets[key]
        atomic_write_bytes(target, bytes(row["data"]))
        written.add(key)
        report.outputs.append(target)
        report.record(int(row["pid"]), float(row["peak_mib"]))
        if on_output is not None:
            on_output({"source": row["path"], "target": target, "pid": int(row["pid"])})
    missing = sorted(str(dst) for key, dst in targets.items() if key not in written)
    if missing:
        raise RuntimeError(f"no output came back for {len(missing)} image(s): {', '.join(missing[:3])}")
    report.seconds = time.perf_counter() - started
    return report


def upscale_video(source: Path, target: Path, spec: RunnerSpec, video: VideoOptions, options: RayOptions) -> RayReport:
    """``source`` in chunks of frames on the actor pool, encoded in order by the driver (serving/video.py)."""
    import ray.data

    from esc_deploy.serving import video as local

    local.check_target(source, target, video.codec)
    per_task = max(1, options.frames_per_task // video.batch) * video.batch  # whole frame batches per chunk
    stamps = frame_timestamps(source)
    chunks = [{"index": i, "first_pts": stamps[start], "count": len(stamps[start : start + per_task])}
              for i, start in enumerate(range(0, len(stamps), per_task))]  # fmt: skip
    report, pool, shared = actor_pool(spec, options)
    scale = _scale_of(spec)
    started = time.perf_counter()
    _ordered(ray.data.DataContext.get_current())
    constructor = {**shared, "source": str(source), "options": video}
    results = ray.data.from_items(chunks).map_batches(VideoActor, fn_constructor_kwargs=constructor, **pool)
    upscale = _in_order(iter(results.iter_rows()), report)
    local.upscale_video(source, target, upscale, scale=scale, options=video)
    report.outputs.append(target)
    report.seconds = time.perf_counter() - started
    return report


def _in_order(rows: Iterator[dict[str, Any]], report: RayReport) -> Callable[[np.ndarray], np.ndarray]:
    """The frame upscaler the local encoder calls, run by run, served from the actors' chunks in order."""
    buffer: list[np.ndarray] = []
    expected = iter(range(1 << 62))

    def upscale(frames: np.ndarray) -> np.ndarray:
        have = sum(len(b) for b in buffer)
        while have < len(frames):
            row = next(rows)
            if int(row["index"]) != next(expected):
                raise RuntimeError(f"video chunk {row['index']} arrived out of order")
            report.record(int(row["pid"]), float(row["peak_mib"]))
            buffer.append(np.asarray(row["frames"]))
            have += len(buffer[-1])
        joined = np.concatenate(buffer)
        buffer[:] = [joined[len(frames) :]]
        return joined[: len(frames)]

    return upscale


def _scale_of(spec: RunnerSpec) -> int:
    """The model's scale without loading it on the driver."""
    from esc_deploy.runtime.facts import ModelFacts

    if spec.kind == "torch" and spec.checkpoint is not None:
        return ModelFacts.from_checkpoint(spec.checkpoint).scale
    with spec.open() as runner:  # ONNX metadata or an engine sidecar: cheap to open on the driver
        return runner.facts.scale


# ------------------------------------------------------------------------------------------------ the command


def run_from_args(args: argparse.Namespace) -> int:
    """The --ray branch of esc-deploy upscale."""
    from esc_deploy.serving.upscale import check_numbers
    from esc_deploy.serving.upscale_media import RunnerSpec, video_options, video_target
    from esc_deploy.serving.video import is_video

    check_numbers(args)  # the local command's limits
    if is_video(args.input) and args.skip_existing and video_target(args.input, args.output).exists():
        print(f"{video_target(args.input, args.output)} exists: skipped")
        return 0

    options = RayOptions(address=args.ray or None, actors=args.actors,
                         frames_per_task=args.frames_per_task or DEFAULT_FRAMES_PER_TASK,
                         progress=not args.no_progress)  # fmt: skip
    spec = RunnerSpec.from_args(args)
    with ray_session(options.address):
        if is_video(args.input):
            target = video_target(args.input, args.output)
            report = upscale_video(args.input, target, spec, video_options(args), options)
        else:
            jobs, quality = image_jobs(args, spec)
            if not jobs:  # every output exists (--skip-existing)
                print("nothing to do: every output exists")
                return 0
            report = upscale_images(jobs, spec, options, quality=quality)
    for path in report.outputs:
        print(path)
    print(report.memory_line())
    return 0


def image_jobs(args: argparse.Namespace, spec: RunnerSpec) -> tuple[list[tuple[Path, Path, TilePlan]], int]:
    """The local command's outputs and tile plans (serving/upscale_jobs.py, serving/upscale.py's tile default)."""
    from esc_deploy.runtime.tiles import plan_tiles
    from esc_deploy.serving.upscale import DEFAULT_TILE
    from esc_deploy.serving.upscale_jobs import plan_jobs

    work = plan_jobs(args.input, args.output, suffix=args.suffix, skip_existing=args.skip_existing)
    if work.unreadable:  # refused up front: the cluster would only fail on it later
        raise ValueError(work.unreadable[0])
    for path in work.skipped:
        print(f"{path} exists: skipped")
    with spec.open() as runner:
        facts = runner.facts
    tile = args.tile if args.tile is not None else min(DEFAULT_TILE, facts.max_side or DEFAULT_TILE)
    jobs = [(job.source.path, job.target, plan_tiles(facts, job.source.size, max_tile=tile, overlap=args.overlap,
                                                      batch=args.batch or 1)) for job in work.jobs]  # fmt: skip
    return jobs, args.quality
