"""esc-deploy upscale's front: videos (serving/video.py) and ``--ray [ADDRESS]`` (serving/ray_job.py); everything
else is the image command (serving/upscale.py), called with the same arguments.

    esc-deploy upscale in.mp4 out.mp4 [--codec h264|vp9|ffv1] [--crf N] [--batch FRAMES]
    esc-deploy upscale photos/ out/ --ray                     # a local Ray instance
    esc-deploy upscale in.mp4 out.mkv --ray ray://head:10001  # join a cluster
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from esc_deploy.common.command import ArgumentParser, error, interrupted, quiet_exporter_logs

if TYPE_CHECKING:
    from esc_deploy.runtime.runner import BackendKind, Runner


@dataclass(frozen=True)
class RunnerSpec:
    """What opens a runner, small enough to send to Ray actors (each opens its own runner from it)."""

    kind: BackendKind = "torch"
    checkpoint: Path | None = None
    attention: str | None = None
    onnx: Path | None = None
    engine: Path | None = None
    device: str = "cpu"

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, device: str = "cpu") -> RunnerSpec:
        return cls(args.backend, args.checkpoint, getattr(args, "attention", None), args.onnx, args.engine, device)

    def for_actor(self, gpus: float) -> RunnerSpec:
        """This spec on the actor's device: CUDA where Ray gave the actor a GPU."""
        return dataclasses.replace(self, device="cuda") if gpus > 0 else self

    def open(self) -> Runner:
        from esc_deploy.runtime.runner import open_runner

        return open_runner(self.kind, checkpoint=self.checkpoint, attention=self.attention, onnx=self.onnx,
                           engine=self.engine, device=self.device)  # fmt: skip


def build_parser() -> ArgumentParser:
    from esc_deploy.serving import upscale
    from esc_deploy.serving.video import CODECS, DEFAULT_BATCH, DEFAULT_CRF

    p = upscale.build_parser()
    p.description = f"{upscale.__doc__}\n{__doc__}"
    known = set(p._option_string_actions)
    media = p.add_argument_group("videos and Ray")
    media.add_argument("--codec", choices=tuple(CODECS), help=f"video codec (default: h264, CRF {DEFAULT_CRF})")
    media.add_argument("--crf", type=int, help="h264/vp9 constant quality (lower is better; default: the codec's)")
    if "--batch" not in known:
        media.add_argument("--batch", type=int, help=f"frames per backend call (default: {DEFAULT_BATCH})")
    else:  # the image command's option: tiles per call there, frames per call for a video
        batch = p._option_string_actions["--batch"]
        batch.help = f"tiles per backend call for images (default: 1), frames for videos (default: {DEFAULT_BATCH})"
    media.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                       help="run on Ray: a cluster's address, or none for a local instance")  # fmt: skip
    media.add_argument("--actors", type=int, help="Ray: model actors (default: one per GPU, else 1)")
    media.add_argument("--frames-per-task", type=int, help="Ray: frames per video chunk (default: 32)")
    p.set_defaults(batch=None)  # videos: DEFAULT_BATCH frames unless --batch says otherwise
    return p


def main(argv: list[str] | None = None) -> int:
    from esc_deploy.serving.video import is_video

    args_list = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(args_list)  # the image command's options and these
    if args.ray is None and not is_video(args.input):
        media_only = [f"--{name.replace('_', '-')}" for name in ("codec", "crf", "actors", "frames_per_task")
                      if getattr(args, name) is not None]  # fmt: skip
        if media_only:
            return error(f"upscale: {', '.join(media_only)} apply to videos and --ray runs only")
        from esc_deploy.serving import upscale

        return upscale.main(args_list)
    quiet_exporter_logs()
    try:
        if args.ray is not None:
            from esc_deploy.serving.ray_job import run_from_args

            return run_from_args(args)
        return video_from_args(args)
    except KeyboardInterrupt:  # the output being written is a temporary file, removed on the way out
        return interrupted()
    except (ValueError, OSError, RuntimeError, MemoryError) as exc:
        return error(f"upscale: {exc}")
    except Exception as exc:
        ray = sys.modules.get("ray")
        if ray is None or not isinstance(exc, ray.exceptions.RayError):
            raise
        root: BaseException = exc  # Ray wraps what failed in an actor: the cause is the line to print
        while root.__cause__ is not None:
            root = root.__cause__
        return error(f"upscale: {' '.join(str(root).split()) or type(root).__name__}")


def video_options(args: argparse.Namespace):  # -> VideoOptions
    from esc_deploy.serving.video import DEFAULT_BATCH, VideoOptions

    return VideoOptions(codec=args.codec or "h264", crf=args.crf, batch=args.batch or DEFAULT_BATCH, tile=args.tile,
                        overlap=args.overlap, progress=not args.no_progress)  # fmt: skip


def video_target(source: Path, target: Path) -> Path:
    """OUT itself, or OUT/<name> when OUT is a folder."""
    return target / source.name if target.is_dir() else target


def video_from_args(args: argparse.Namespace) -> int:
    from esc_deploy.serving.upscale import check_numbers
    from esc_deploy.serving.video import check_target, count_frames, runner_frames, upscale_video

    check_numbers(args)
    options = video_options(args)
    target = video_target(args.input, args.output)
    if args.skip_existing and target.exists():
        print(f"{target} exists: skipped")
        return 0
    check_target(args.input, target, options.codec)  # before the model loads
    with RunnerSpec.from_args(args).open() as runner:
        print(f"{args.input} -> {target}: {count_frames(args.input)} frames, {options.codec}", flush=True)
        report = upscale_video(args.input, target, runner_frames(runner, options), scale=runner.facts.scale,
                               options=options)  # fmt: skip
    print(report.line())
    return 0
