"""esc-deploy upscale --ray on a real local Ray instance (2 CPUs, no dashboard, 127.0.0.1, one per module):
photographs and a video give the local run's results bit for bit; an actor killed mid-run loses nothing."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest

from esc_deploy.serving import ray_job, upscale_media
from tests.conftest import GOLDEN_DIR
from tests.serving.videos import audio_packets, decode_rgb, make_video

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")  # in the ray extra
pytest.importorskip("ray.data")
Image = pytest.importorskip("PIL.Image")
CHECKPOINT = GOLDEN_DIR / "tiny_x2.pth"
# One worker runs the module, so one Ray instance exists at a time: local_ray's check that no esc-ray-* session
# folder is left would otherwise see the other worker's instance come and go.
pytestmark = pytest.mark.xdist_group("ray")
MODEL = ["--checkpoint", str(CHECKPOINT), "--no-progress"]


@pytest.fixture(scope="module")
def local_ray():
    """One Ray instance for the module (serving/ray_job.py local_ray): after it, no process it started is left
    and no session folder."""
    before = set(Path("/tmp").glob("esc-ray-*"))
    running = {p.pid for p in psutil.Process().children(recursive=True)}  # e.g. another module's Triton server
    with ray_job.local_ray(num_cpus=2):
        started = [p for p in psutil.Process().children(recursive=True) if p.pid not in running]  # GCS, raylet, ...
        yield running
    assert not [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert set(Path("/tmp").glob("esc-ray-*")) == before


def ray_sockets(running_before: set[int]) -> list[tuple[str, str, str]]:
    """(process, local address, remote address) of every inet socket of the processes Ray started."""
    found = []
    for process in psutil.Process().children(recursive=True):
        if process.pid in running_before:
            continue
        with contextlib.suppress(psutil.Error):
            for c in process.net_connections(kind="inet"):
                found.append((process.name(), c.laddr.ip if c.laddr else "", c.raddr.ip if c.raddr else ""))
    return found


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 photograph crops of different sizes, one gray and one with alpha."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    for i in range(24):
        photo = sources[i % 4]
        h, w = 24 + i, 48 - i
        y, x = 15 * i % 200, 10 * i % 250
        crop = np.ascontiguousarray(photo[y : y + h, x : x + w, :3])
        image = Image.fromarray(crop)
        if i == 3:
            image = image.convert("L")
        if i == 5:
            image.putalpha(Image.fromarray(np.linspace(0, 255, h * w).reshape(h, w).astype(np.uint8)))
        image.save(folder / f"photo{i}.png")
    return folder


@pytest.fixture(scope="module")
def local_images(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local")
    assert upscale_media.main([str(photos), str(out), *MODEL]) == 0
    return out


def _pixels(folder: Path) -> dict[str, np.ndarray]:
    found = {}
    for path in sorted(folder.iterdir()):
        with Image.open(path) as image:
            found[path.name] = np.asarray(image).copy()
    return found


def _same_outputs(got: Path, want: Path) -> None:
    mine, theirs = _pixels(got), _pixels(want)
    assert sorted(mine) == sorted(theirs)
    for name, pixels in theirs.items():
        np.testing.assert_array_equal(mine[name], pixels, err_msg=name)


def test_photographs_equal_the_local_run(local_ray, photos: Path, local_images: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ray"
    assert upscale_media.main([str(photos), str(out), "--ray", "--actors", "2", *MODEL]) == 0
    _same_outputs(out, local_images)
    printed = capsys.readouterr().out
    assert "peak memory per actor: pid" in printed and " MiB" in printed
    # Every server Ray started listens, and every connection runs, on loopback (GCS, raylet, workers).
    sockets = ray_sockets(local_ray)
    assert len(sockets) > 5
    loopback = ("127.0.0.1", "::ffff:127.0.0.1", "::1", "")
    assert [s for s in sockets if s[1] not in loopback or s[2] not in loopback] == []


def test_killed_actors_are_replaced_and_nothing_is_lost(local_ray, photos: Path, tmp_path: Path):
    """Every model actor alive at the first output is SIGKILLed. ESC-light (the golden light_x4 checkpoint) is
    slow enough per image that work is still queued then: replacements must do it, each image exactly once."""
    from esc_deploy.serving.ray_job import RayOptions, image_jobs, upscale_images

    slow = ["--checkpoint", str(GOLDEN_DIR / "light_x4.pth"), "--no-progress"]
    local = tmp_path / "local"
    assert upscale_media.main([str(photos), str(local), *slow]) == 0
    args = upscale_media.build_parser().parse_args([str(photos), str(tmp_path / "ray"), "--ray", *slow])
    spec = upscale_media.RunnerSpec.from_args(args)
    jobs, quality = image_jobs(args, spec)
    seen: list[int] = []
    killed: list[int] = []

    def kill_every_actor(output: dict) -> None:
        seen.append(output["pid"])
        if len(seen) == 1:
            for process in psutil.process_iter(["cmdline"]):
                if "MapBatches(ImageActor)" in " ".join(process.info["cmdline"] or []):
                    killed.append(process.pid)
                    process.kill()

    report = upscale_images(jobs, spec, RayOptions(actors=2), quality=quality, on_output=kill_every_actor)
    assert len(report.outputs) == len(set(report.outputs)) == len(jobs) == 24  # each image once
    _same_outputs(tmp_path / "ray", local)
    assert seen[0] in killed  # how many more: Ray's pool may have been starting or restarting others
    assert set(seen) - set(killed), "no replacement actor wrote an output"
    assert all(mib > 0 for mib in report.actor_peak_mib.values())


def test_video_equals_the_local_run(local_ray, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.mp4", frames=24)
    common = ["--codec", "ffv1", "--batch", "4", *MODEL]
    assert upscale_media.main([str(clip), str(tmp_path / "local.mkv"), *common]) == 0
    ray_args = ["--ray", "--actors", "2", "--frames-per-task", "8"]
    assert upscale_media.main([str(clip), str(tmp_path / "ray.mkv"), *ray_args, *common]) == 0
    local, remote = decode_rgb(tmp_path / "local.mkv"), decode_rgb(tmp_path / "ray.mkv")
    assert len(remote) == len(local) == 24
    for a, b in zip(remote, local, strict=True):
        np.testing.assert_array_equal(a, b)
    assert audio_packets(tmp_path / "ray.mkv") == audio_packets(clip)
