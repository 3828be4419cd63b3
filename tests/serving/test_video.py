"""esc-deploy upscale on a video: real PyAV/FFmpeg encoders, a generated clip of moving photographs with audio,
the tiny golden model (official-format checkpoint) through the torch runner."""

from __future__ import annotations

import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from esc_deploy.runtime.images import to_uint8
from esc_deploy.runtime.runner import open_runner
from esc_deploy.runtime.tiles import plan_tiles, upscale_array
from esc_deploy.serving.video import CODECS, VideoOptions, runner_frames, upscale_frames, upscale_video
from tests.conftest import GOLDEN_DIR
from tests.serving.videos import RATE, SIZE, audio_packets, decode_rgb, make_video

av = pytest.importorskip("av")
CHECKPOINT = GOLDEN_DIR / "tiny_x2.pth"
FRAMES = 2 * RATE


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames=FRAMES)


@pytest.fixture(scope="module")
def runner():
    with open_runner("torch", checkpoint=CHECKPOINT) as opened:
        yield opened


@pytest.fixture(scope="module")
def image_path_frames(clip: Path, runner) -> list[np.ndarray]:
    """Each decoded input frame upscaled alone, as the image path does (one image, its tile plan, 8 bits)."""
    results = []
    for frame in decode_rgb(clip):
        planes = frame.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0)
        plan = plan_tiles(runner.facts, frame.shape[:2], max_tile=192, overlap=32, batch=1)
        out = upscale_array(planes, runner, scale=runner.facts.scale, plan=plan, min_hw=runner.facts.min_hw)
        results.append(to_uint8(out)[0].transpose(1, 2, 0))
    return results


def _run(source: Path, target: Path, runner, options: VideoOptions | None = None):
    options = options or VideoOptions(progress=False)
    return upscale_video(source, target, runner_frames(runner, options), scale=runner.facts.scale, options=options)


def _encoded_alone(frames: list[np.ndarray], codec: str, path: Path) -> list[np.ndarray]:
    """``frames`` through the codec with the same settings, no model: the codec's own loss on this content."""
    spec = CODECS[codec]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(spec.encoder, rate=RATE, options=dict(spec.options))
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = spec.pixel_format
        for i, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, RATE)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return decode_rgb(path)


def _streams(path: Path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        return {
            "frames": sum(1 for _ in container.decode(video=0)),
            "rate": video.average_rate,
            "time_base": video.time_base,
            "size": (video.codec_context.height, video.codec_context.width),
            "codec": video.codec_context.name,
            "audio": [(s.codec_context.name, s.sample_rate) for s in container.streams.audio],
            "duration": container.duration / 1e6 if container.duration else None,
        }


def test_ffv1_frames_are_the_image_paths(clip: Path, runner, image_path_frames: list, tmp_path: Path) -> None:
    """One frame a call: bit for bit the image path's output. Batched: the same within 1 level of 8 bits (a
    batch of frames runs different convolution kernels), and exactly the batched computation's output."""
    single = _run(clip, tmp_path / "single.mkv", runner, VideoOptions(codec="ffv1", batch=1, progress=False))
    assert single.frames == FRAMES
    for got, want in zip(decode_rgb(single.target), image_path_frames, strict=True):
        np.testing.assert_array_equal(got, want)
    batched = _run(clip, tmp_path / "batch.mkv", runner, VideoOptions(codec="ffv1", batch=4, progress=False))
    decoded = decode_rgb(batched.target)
    source = np.stack(decode_rgb(clip))
    expected = np.concatenate([upscale_frames(runner, source[i : i + 4], tile=None, overlap=32) for i in (0, 4, 8)])
    np.testing.assert_array_equal(np.stack(decoded[:12]), expected)
    worst = max(np.abs(a.astype(int) - b.astype(int)).max() for a, b in zip(decoded, image_path_frames, strict=True))
    assert worst <= 1


def test_h264_keeps_timing_and_audio(clip: Path, runner, image_path_frames: list, tmp_path: Path) -> None:
    out = _run(clip, tmp_path / "out.mp4", runner, VideoOptions(batch=4, progress=False))
    before, after = _streams(clip), _streams(out.target)
    assert after["codec"] == "h264" and after["size"] == (SIZE[0] * 2, SIZE[1] * 2)
    assert after["frames"] == before["frames"] == FRAMES
    assert after["rate"] == before["rate"] == RATE
    assert after["time_base"] == before["time_base"]
    assert after["duration"] == pytest.approx(before["duration"], abs=1 / RATE)
    assert after["audio"] == before["audio"] == [("aac", 16000)]
    assert audio_packets(out.target) == audio_packets(clip)  # copied, not re-encoded
    # Within the codec's tolerance: no further from the image path than the image path's frames encoded alone.
    alone = _encoded_alone(image_path_frames, "h264", tmp_path / "alone.mp4")
    got = decode_rgb(out.target)
    for frame, reference, coded in zip(got, image_path_frames, alone, strict=True):
        error = np.abs(frame.astype(float) - reference).mean()
        assert error <= np.abs(coded.astype(float) - reference).mean() + 0.5


def _ffv1_clip(path: Path, pixel_format: str) -> Path:
    """Two FFV1 frames in ``pixel_format`` (10-bit, or with alpha): what the 8-bit RGB video path cannot keep."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("ffv1", rate=RATE)
        video.height, video.width = SIZE
        video.pix_fmt = pixel_format
        for i in range(2):
            frame = av.VideoFrame.from_ndarray(np.full((*SIZE, 3), 60 * i, np.uint8), format="rgb24")
            frame = frame.reformat(format=pixel_format)
            frame.pts, frame.time_base = i, Fraction(1, RATE)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    return path


def test_refusals_leave_nothing(clip: Path, runner, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot hold ffv1"):
        _run(clip, tmp_path / "x.webm", runner, VideoOptions(codec="ffv1"))
    with pytest.raises(ValueError, match="is the input"):
        _run(clip, clip, runner)
    alias = tmp_path / "alias.mp4"  # another path to the input itself
    alias.hardlink_to(clip)
    with pytest.raises(ValueError, match="is the input"):
        _run(clip, alias, runner)
    alias.unlink()
    for pixel_format, lost in (("yuv420p10le", "more than 8 bits"), ("yuva420p", "alpha")):
        deep = _ffv1_clip(tmp_path / f"{pixel_format}.mkv", pixel_format)
        with pytest.raises(ValueError, match=lost):
            _run(deep, tmp_path / "z.mkv", runner, VideoOptions(codec="ffv1"))
        deep.unlink()
    not_video = tmp_path / "noise.mp4"
    not_video.write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match="cannot read video"):
        _run(not_video, tmp_path / "y.mp4", runner)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noise.mp4"]


def test_command_line_and_ctrl_c(clip: Path, tmp_path: Path) -> None:
    """esc-deploy upscale in.mp4 out.mkv --codec ffv1; a run stopped by SIGINT leaves no file and exits 130."""
    command = [sys.executable, "-m", "esc_deploy", "upscale", str(clip), str(tmp_path / "cli.mkv"),
               "--checkpoint", str(CHECKPOINT), "--codec", "ffv1", "--no-progress"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _streams(tmp_path / "cli.mkv")["frames"] == FRAMES
    long_clip = make_video(tmp_path / "long.mp4", frames=20 * RATE, audio=False)
    stopped = [*command[:4], str(long_clip), str(tmp_path / "stopped.mp4"), *command[6:8], "--no-progress"]
    process = subprocess.Popen(stopped, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert "240 frames" in process.stdout.readline()  # the start line: the model is loaded, frames are next
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli.mkv", "long.mp4"]
