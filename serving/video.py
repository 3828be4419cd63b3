"""Videos through esc-deploy upscale: decode with PyAV, upscale frames in batches, encode, keep the timing and audio.

* frames go through the same runner and tile plan as images (esc_deploy.runtime), ``batch`` frames a call;
  batches are fixed runs of frame indices (frames 0..B-1, B..2B-1, ...), so a run split across workers by
  frame ranges on batch boundaries (serving/ray_job.py) computes the same bits as a local run.
* codecs (``CODECS``): ``h264`` (libx264, yuv420p, CRF ``DEFAULT_CRF``: visually lossless for most material,
  the default), ``vp9`` (libvpx-vp9, yuv420p, constant quality), ``ffv1`` (lossless, 8-bit RGB (bgr0): the decoded
  frames are exactly the model's 8-bit output).
* the output keeps the input's frame rate, time base and frame timestamps; audio streams are copied packet
  for packet (not re-encoded); other streams (subtitles, data) are dropped.
* the file is written to a temporary name beside the output and renamed when complete
  (esc_deploy.common.files.atomic_output): an error or Ctrl-C leaves no partial output.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from esc_deploy.common.files import atomic_output
from esc_deploy.runtime.images import to_uint8
from esc_deploy.runtime.tiles import DEFAULT_OVERLAP, plan_tiles, upscale_array

if TYPE_CHECKING:
    import av.container

    from esc_deploy.runtime.runner import Runner

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v")
# Container format by output suffix (the temporary file's own suffix says nothing to FFmpeg).
CONTAINER_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mkv": "matroska", ".mov": "mov", ".webm": "webm", ".avi": "avi"}
CodecName = Literal["h264", "vp9", "ffv1"]
DEFAULT_CRF = 18  # x264: visually lossless on most material; 23 is x264's own default
DEFAULT_BATCH = 4  # frames per runner call


@dataclass(frozen=True)
class Codec:
    encoder: str  # FFmpeg's encoder name
    pixel_format: str
    options: dict[str, str] = field(default_factory=dict)
    lossless: bool = False

    def with_crf(self, crf: int | None) -> Codec:
        if crf is None or "crf" not in self.options:
            return self
        return Codec(self.encoder, self.pixel_format, {**self.options, "crf": str(crf)}, self.lossless)


CODECS: dict[str, Codec] = {
    "h264": Codec("libx264", "yuv420p", {"crf": str(DEFAULT_CRF), "preset": "medium"}),
    "vp9": Codec("libvpx-vp9", "yuv420p", {"crf": "24", "b": "0", "row-mt": "1"}),
    "ffv1": Codec("ffv1", "bgr0", {"level": "3"}, lossless=True),
}


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoOptions:
    codec: CodecName = "h264"
    crf: int | None = None  # None: the codec's default above
    batch: int = DEFAULT_BATCH
    tile: int | None = None  # largest tile side (input pixels); None: the whole frame
    overlap: int = DEFAULT_OVERLAP
    progress: bool = True

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"unknown codec {self.codec!r}; expected one of {', '.join(CODECS)}")
        if self.batch < 1:
            raise ValueError(f"batch must be positive, got {self.batch}")
        if self.crf is not None and not 0 <= self.crf <= 63:
            raise ValueError(f"crf must be in 0..63, got {self.crf}")


@dataclass(frozen=True)
class VideoReport:
    source: Path
    target: Path
    frames: int
    size: tuple[int, int]  # output (height, width)
    rate: Fraction | None
    audio_streams: int
    seconds: float

    def line(self) -> str:
        h, w = self.size
        fps = f"{self.frames / self.seconds:.2f}" if self.seconds > 0 else "-"
        return f"{self.source} -> {self.target} {w}x{h}, {self.frames} frames, {self.audio_streams} audio; {fps} fps"


# ------------------------------------------------------------------------------------------------ checks


def check_target(source: Path, target: Path, codec: CodecName) -> str:
    """The container format for ``target``; ValueError (one line) for an output that would lose or clobber."""
    if not source.is_file():
        raise ValueError(f"{source}: no such video")
    if target.exists() and os.path.samefile(target, source):  # any other path to the same file too
        raise ValueError(f"{target} is the input; choose another output")
    if target.is_dir():
        raise ValueError(f"{target} is a folder; a video input needs an output file")
    fmt = CONTAINER_FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise ValueError(f"unknown video output {target.suffix or '(no suffix)'!r}; expected one of {VIDEO_SUFFIXES}")
    import io

    import av

    with av.open(io.BytesIO(), "w", format=fmt) as probe:  # in memory: nothing touches the disk
        supported = probe.supported_codecs
    if CODECS[codec].encoder not in supported:
        raise ValueError(f"{target.suffix} cannot hold {codec}; use .mkv (holds h264, vp9 and ffv1)")
    return fmt


def open_input(source: Path) -> av.container.InputContainer:
    import av

    try:
        container = av.open(str(source))
    except (av.FFmpegError, OSError) as exc:
        raise ValueError(f"cannot read video {source}: {' '.join(str(exc).split())}") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"{source} has no video stream")
    lost = _would_lose(container.streams.video[0].codec_context.format)
    if lost is not None:
        container.close()
        raise ValueError(f"{source}: {lost}")
    return container


def _would_lose(pixel_format: Any) -> str | None:
    """Frames are upscaled as 8-bit RGB: why that would lose what the stream holds, or None."""
    if pixel_format is None:
        return None
    components = list(pixel_format.components)
    if any(c.is_alpha for c in components):
        return f"its frames ({pixel_format.name}) have alpha, which the video path does not keep"
    if any(c.bits > 8 for c in components):
        return f"its frames ({pixel_format.name}) have more than 8 bits, which the video path does not keep"
    return None


# ------------------------------------------------------------------------------------------------ frames


def upscale_frames(runner: Runner, frames: np.ndarray, *, tile: int | None, overlap: int) -> np.ndarray:
    """[B, H, W, 3] uint8 RGB -> [B, H*s, W*s, 3] uint8: one runner call per tile position for the B frames."""
    facts = runner.facts
    batch = np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)
    plan = plan_tiles(facts, frames.shape[1:3], max_tile=tile, overlap=overlap, batch=len(frames))
    out = upscale_array(batch, runner, scale=facts.scale, plan=plan, min_hw=facts.min_hw)
    return to_uint8(out).transpose(0, 2, 3, 1)


def frame_batches(frames: Iterator[Any], size: int) -> Iterator[list[Any]]:
    """Runs of ``size`` consecutive decoded frames (the last may be shorter)."""
    run: list[Any] = []
    for frame in frames:
        run.append(frame)
        if len(run) == size:
            yield run
            run = []
    if run:
        yield run


def count_frames(source: Path) -> int:
    """Frames in the first video stream: the header's count, else counted by demuxing (no decoding)."""
    with open_input(source) as container:
        stream = container.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        return sum(1 for packet in container.demux(stream) if packet.size)


# ------------------------------------------------------------------------------------------------ the job


FrameUpscale = Callable[[np.ndarray], np.ndarray]  # [B, H, W, 3] uint8 -> [B, H*s, W*s, 3] uint8


def runner_frames(runner: Runner, options: VideoOptions) -> FrameUpscale:
    """``upscale_frames`` with ``runner`` and the options' tiles."""
    return lambda frames: upscale_frames(runner, frames, tile=options.tile, overlap=options.overlap)


def upscale_video(
    source: Path, target: Path, upscale: FrameUpscale, *, scale: int, options: VideoOptions | None = None
) -> VideoReport:
    """Upscale ``source`` into ``target`` (see the module docstring): ``upscale`` is called on consecutive runs
    of ``options.batch`` frames, in order (``runner_frames`` locally, serving/ray_job.py on a cluster)."""
    import time

    import av
    from tqdm import tqdm

    options = options or VideoOptions()
    fmt = check_target(source, target, options.codec)
    codec = CODECS[options.codec].with_crf(options.crf)
    started = time.perf_counter()
    try:
        with open_input(source) as container, atomic_output(target) as tmp:
            video_in: Any = container.streams.video[0]
            audio_in = list(container.streams.audio)
            # Read while the containers are open: PyAV 18.1.1 refuses a closed container's stream attributes.
            rate = video_in.average_rate
            size = (video_in.codec_context.height * scale, video_in.codec_context.width * scale)
            with av.open(str(tmp), "w", format=fmt) as output:
                video_out: Any = output.add_stream(codec.encoder, rate=rate, options=dict(codec.options))
                video_out.height, video_out.width = size
                video_out.pix_fmt = codec.pixel_format
                video_out.time_base = video_in.time_base
                video_out.codec_context.time_base = video_in.time_base
                audio_out = {stream.index: output.add_stream_from_template(stream) for stream in audio_in}
                total = video_in.frames or None
                bar = tqdm(total=total, unit="frame", disable=True if not options.progress else None, leave=False)
                frames = 0
                with bar:
                    pending: list[Any] = []  # decoded frames waiting for a full batch
                    for packet in container.demux(video_in, *audio_in):
                        if packet.stream.type == "audio":
                            if packet.dts is not None:  # the demuxer's flush packet carries nothing
                                packet.stream = audio_out[packet.stream.index]
                                output.mux(packet)
                            continue
                        pending.extend(packet.decode())
                        while len(pending) >= options.batch:
                            frames += _encode(upscale, pending[: options.batch], video_out, output)
                            del pending[: options.batch]
                            bar.update(options.batch)
                    if pending:
                        frames += _encode(upscale, pending, video_out, output)
                        bar.update(len(pending))
                output.mux(video_out.encode(None))  # flush the encoder
                if frames == 0:
                    raise ValueError(f"{source}: no video frames decoded")
    except (av.FFmpegError, EOFError) as exc:  # PyAV's errors are not all OSError or ValueError
        raise ValueError(f"{source}: {' '.join(str(exc).split())}") from None
    seconds = time.perf_counter() - started
    return VideoReport(source, target, frames, size, rate, len(audio_in), seconds)


def _encode(run: FrameUpscale, frames: list[Any], stream: Any, output: Any) -> int:
    import av

    pixels = np.stack([frame.to_ndarray(format="rgb24") for frame in frames])
    for source_frame, upscaled in zip(frames, run(pixels), strict=True):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(upscaled), format="rgb24")
        frame.pts = source_frame.pts
        frame.time_base = source_frame.time_base
        output.mux(stream.encode(frame))
    return len(frames)
