"""Small test videos made from moving photographs (scikit-image's), with an AAC audio track, written by PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

SIZE = (48, 64)  # (height, width)
RATE = 12
AUDIO_RATE = 16000


def photograph_frames(count: int, size: tuple[int, int] = SIZE) -> list[np.ndarray]:
    """``count`` RGB frames: a window panning across the astronaut, then across the coffee cup."""
    from skimage import data

    h, w = size
    frames = []
    for i in range(count):
        photo = data.astronaut() if i < count // 2 else data.coffee()
        y, x = 100 + 3 * i % 150, 120 + 5 * i % 250  # moves a few pixels a frame: real motion for the encoder
        frames.append(np.ascontiguousarray(photo[y : y + h, x : x + w, :3]))
    return frames


def make_video(path: Path, *, frames: int = 2 * RATE, rate: int = RATE, audio: bool = True) -> Path:
    """H.264 (yuv420p) at ``rate`` fps with a 440 Hz AAC tone as long as the picture."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=rate, options={"crf": "20"})
        video.height, video.width = SIZE
        video.pix_fmt = "yuv420p"
        sound = container.add_stream("aac", rate=AUDIO_RATE) if audio else None
        for i, pixels in enumerate(photograph_frames(frames)):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, rate)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            samples = int(AUDIO_RATE * frames / rate)
            chunk = 1024
            t = np.arange(samples) / AUDIO_RATE
            tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for start in range(0, samples, chunk):
                block = tone[None, start : start + chunk]
                piece = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp", layout="mono")
                piece.sample_rate, piece.pts, piece.time_base = AUDIO_RATE, start, Fraction(1, AUDIO_RATE)
                container.mux(sound.encode(piece))
            container.mux(sound.encode(None))
    return path


def decode_rgb(path: Path) -> list[np.ndarray]:
    """Every frame of the first video stream as RGB uint8."""
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def audio_packets(path: Path) -> list[bytes]:
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            return []
        return [bytes(p) for p in container.demux(audio=0) if p.size]
