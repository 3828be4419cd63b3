"""The scale-out benchmark: one line per path of esc-deploy upscale (images locally, images on Ray with 1 and 2
actors, a video locally and on Ray), written into docs/scale.md between its benchmark markers.

Each time is the wall time of the whole command as a user runs it (model loading included; for Ray the
actors' start and model loading too, the Ray instance itself started once before), median of ``--runs``.
Inputs: scikit-image photographs cut to ``--size`` and a clip of moving photographs with audio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from esc_deploy.common.command import ArgumentParser

START = "<!-- scale benchmark: start (python validation/scale_benchmark.py) -->"
END = "<!-- scale benchmark: end -->"


def photographs(folder: Path, count: int, side: int) -> list[Path]:
    from PIL import Image
    from skimage import data

    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    paths = []
    for i in range(count):
        photo = sources[i % len(sources)]
        crop = np.ascontiguousarray(photo[20 * i : 20 * i + side, 10 * i : 10 * i + side, :3])
        paths.append(folder / f"photo{i}.png")
        Image.fromarray(crop).save(paths[-1])
    return paths


def clip(path: Path, frames: int, side: int, rate: int = 24) -> Path:
    """H.264 frames of a window panning over a photograph (no audio: the benchmark times the frames)."""
    from fractions import Fraction

    import av
    from skimage import data

    photo = data.astronaut()
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=rate, options={"crf": "18"})
        video.height = video.width = side
        video.pix_fmt = "yuv420p"
        for i in range(frames):
            pixels = np.ascontiguousarray(photo[2 * i : 2 * i + side, 3 * i : 3 * i + side])
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, rate)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    return path


def median_seconds(run: Callable[[], int], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        if run() != 0:
            raise RuntimeError("the command failed")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(args: argparse.Namespace, folder: Path) -> list[tuple[str, str, float, str]]:
    """(path, work, median seconds, rate) per benchmarked path."""
    from esc_deploy.serving.ray_job import local_ray
    from esc_deploy.serving.upscale_media import main as upscale

    photos = folder / "photos"
    photos.mkdir()
    images = photographs(photos, args.images, args.size)
    video = clip(folder / "clip.mp4", args.frames, args.size)
    model = ["--no-progress"] + (["--checkpoint", str(args.checkpoint)] if args.checkpoint else [])
    work_images = f"{len(images)} images {args.size}x{args.size}"
    work_video = f"{args.frames} frames {args.size}x{args.size}, h264"
    rows = []

    def add(name: str, work: str, command: list[str], count: int, unit: str) -> None:
        out = folder / "out"

        def once() -> int:
            _fresh(out)  # every run writes into an empty folder
            return upscale([command[0], str(out / command[1]), *command[2:]])

        seconds = median_seconds(once, args.runs)
        rows.append((name, work, seconds, f"{count / seconds:.2f} {unit}/s"))
        print(f"{name}: {seconds:.2f} s", flush=True)

    add("images, local", work_images, [str(photos), "", *model], len(images), "images")
    add("video, local", work_video, [str(video), "out.mp4", *model], args.frames, "frames")
    started = time.perf_counter()
    with local_ray():
        rows.append(("Ray start (once)", "local instance", time.perf_counter() - started, "-"))
        for actors in (1, 2):
            on_ray = ["--ray", "--actors", str(actors)]
            add(f"images, Ray, {actors} actor(s)", work_images, [str(photos), "", *on_ray, *model], len(images),
                "images")  # fmt: skip
        add("video, Ray, 2 actors", work_video, [str(video), "out.mp4", "--ray", "--actors", "2", *model],
            args.frames, "frames")  # fmt: skip
    return rows


def _fresh(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()


def section(rows: list[tuple[str, str, float, str]], args: argparse.Namespace, machine: str) -> str:
    model = str(args.checkpoint) if args.checkpoint else "the seeded default model (ESC-light x4)"
    lines = [START, "", f"Model: {model}; median of {args.runs} runs; wall time of the whole command.", "",
             "| path | work | seconds | rate |", "|---|---|---|---|"]  # fmt: skip
    lines += [f"| {name} | {work} | {seconds:.2f} | {rate} |" for name, work, seconds, rate in rows]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())  # a shared machine's other work shows up in the times
    lines += ["", f"Machine: {machine}; load average after the run (1, 5, 15 min): {load}.", "", END]
    return "\n".join(lines)


def write_section(doc: Path, text: str) -> None:
    from esc_deploy.common.files import atomic_write_text

    current = doc.read_text() if doc.is_file() else f"{START}\n{END}\n"
    if START not in current or END not in current:
        raise ValueError(f"{doc} has no benchmark markers ({START} ... {END})")
    head, rest = current.split(START, 1)
    tail = rest.split(END, 1)[1]
    atomic_write_text(doc, head + text + tail)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python validation/scale_benchmark.py", description=__doc__)
    p.add_argument(
        "--output", type=Path, default=Path("docs/scale.md"), help="the doc to update (default: %(default)s)"
    )
    p.add_argument("--checkpoint", type=Path, help="official checkpoint (default: the seeded default model)")
    p.add_argument("--images", type=int, default=4, help="photographs (default: %(default)s)")
    p.add_argument("--frames", type=int, default=24, help="video frames (default: %(default)s)")
    p.add_argument("--size", type=int, default=64, help="image and frame side, pixels (default: %(default)s)")
    p.add_argument("--runs", type=int, default=3, help="runs per path; the median is reported (default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    from esc_deploy.validation.machine import describe_machine, machine_info

    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="esc-scale-bench-") as folder:
        rows = measure(args, Path(folder))
    write_section(args.output, section(rows, args, describe_machine(machine_info())))
    print(f"wrote {args.output}")
    return 0
