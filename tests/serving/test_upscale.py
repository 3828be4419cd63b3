"""``esc-deploy upscale`` on real photographs, through the real command: every image kept (format by suffix,
alpha, gray, 16 bits), refusals before anything is written, unreadable images reported and skipped, Ctrl-C,
--skip-existing, --batch, and a folder's peak memory independent of its number of images.

The tiny golden model (tiny_x2: dim 16, window 8, x2, official checkpoint format) keeps each run to
seconds; torch against ONNX Runtime uses the real_x4 export other tests share.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image
from skimage import data

from esc_deploy import cli
from esc_deploy.serving import upscale
from tests.conftest import GOLDEN_DIR, REPO

CHECKPOINT = GOLDEN_DIR / "real_x4.pth"  # two blocks, official format; shares its export with other tests
TINY = GOLDEN_DIR / "tiny_x2.pth"
TINY_ARGS = ["--checkpoint", str(TINY), "--no-progress"]


def _rgba() -> Image.Image:
    """A photograph with a real soft-edged alpha: the astronaut's colours, the camera's gray as coverage."""
    rgb = Image.fromarray(data.astronaut()[120:184, 180:260])  # 64x80
    return Image.merge("RGBA", (*rgb.split(), Image.fromarray(data.camera()[200:264, 220:300])))


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.chelsea()[60:130, 120:220]).save(folder / "chelsea.png")  # 70x100: tiled at 48
    Image.fromarray(data.coffee()[100:140, 200:250]).save(folder / "coffee.jpg", quality=95)  # 40x50
    return folder


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One photograph per kept mode."""
    folder = tmp_path_factory.mktemp("kinds")
    Image.fromarray(data.astronaut()[120:184, 180:260]).save(folder / "rgb.png")
    _rgba().save(folder / "rgba.png")
    _rgba().getchannel("A").save(folder / "alpha.png")  # the alpha plane alone, as a gray image
    Image.merge("LA", (_rgba().convert("L"), _rgba().getchannel("A"))).save(folder / "la.png")
    Image.fromarray(data.camera()[100:164, 150:230]).save(folder / "gray.png")
    # 16-bit: the camera's 8 bits times 257, plus a ramp below one 8-bit step, so that 8 bits would lose it
    fine = data.camera()[100:164, 150:230].astype(np.uint16) * 257 + np.arange(80, dtype=np.uint16)[None, :] * 3
    Image.fromarray(fine).save(folder / "gray16.png")
    return folder


def _run(*argv: str) -> int:
    return cli.main(["upscale", *argv])


def _decoded(path: Path) -> Image.Image:
    """The image, every pixel decoded (a truncated file raises here), its format kept."""
    image = Image.open(path)
    image.load()  # reads the whole file and closes it
    return image


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ------------------------------------------------------------------------------------------------ backends


@pytest.fixture(scope="module")
def real_onnx(exports, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "real_x4.onnx"
    onnx.save(exports.proto("real_x4", "plugin"), str(path))
    return path


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(_decoded(path).convert("RGB"), dtype=np.int16)


@pytest.mark.xdist_group("real_x4")  # with the other real_x4 exports (tests/conftest.py)
def test_torch_and_onnxruntime_agree_on_a_tiled_folder(photos: Path, real_onnx: Path, tmp_path: Path) -> None:
    outputs = {}
    for backend, extra in (("torch", ["--checkpoint", str(CHECKPOINT)]), ("onnxruntime", ["--onnx", str(real_onnx)])):
        out = tmp_path / backend
        code = upscale.main([str(photos), str(out), "--backend", backend, *extra, "--tile", "48", "--no-progress"])
        assert code == 0
        outputs[backend] = {p.name: _pixels(p) for p in sorted(out.iterdir())}
    assert sorted(outputs["torch"]) == ["chelsea.png", "coffee.jpg"]  # each keeps its format
    assert outputs["torch"]["chelsea.png"].shape == (280, 400, 3)  # 4x the 70x100 photograph
    assert outputs["torch"]["coffee.jpg"].shape == (160, 200, 3)
    assert np.abs(outputs["torch"]["chelsea.png"] - outputs["onnxruntime"]["chelsea.png"]).max() <= 1  # rounding
    assert np.abs(outputs["torch"]["coffee.jpg"] - outputs["onnxruntime"]["coffee.jpg"]).mean() < 1  # JPEG


def test_tiling_matches_one_call_up_to_the_blend(photos: Path, tmp_path: Path) -> None:
    """Tiles of 48 with overlap 32 against the whole 70x100 image in one call (--tile 128)."""
    whole, tiled = tmp_path / "whole.png", tmp_path / "tiled.png"
    args = [str(photos / "chelsea.png"), "--checkpoint", str(CHECKPOINT), "--no-progress"]
    assert upscale.main([args[0], str(whole), *args[1:], "--tile", "128"]) == 0
    assert upscale.main([args[0], str(tiled), *args[1:], "--tile", "48"]) == 0
    a, b = _pixels(whole), _pixels(tiled)
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    psnr = 10 * np.log10(255**2 / max(mse, 1e-12))
    assert mse > 0 and psnr > 30, psnr  # tiles see less context than the whole image: close, not equal


def test_batched_tiles_give_the_same_image(kinds: Path, tmp_path: Path) -> None:
    for batch in ("1", "5"):
        assert (
            _run(
                str(kinds / "rgb.png"),
                str(tmp_path / f"b{batch}.png"),
                "--tile",
                "32",
                "--overlap",
                "8",
                "--batch",
                batch,
                *TINY_ARGS,
            )
            == 0
        )
    one, five = _pixels(tmp_path / "b1.png"), _pixels(tmp_path / "b5.png")
    assert one.shape == (128, 160, 3) and np.abs(one - five).max() <= 1


# ------------------------------------------------------------------------------------------------ every image kept


@pytest.mark.parametrize(
    ("suffix", "magic", "fmt"),
    [
        (".png", b"\x89PNG", "PNG"),
        (".jpg", b"\xff\xd8\xff", "JPEG"),
        (".webp", b"RIFF", "WEBP"),
        (".tiff", b"II*\x00", "TIFF"),
    ],
)
def test_the_output_format_follows_the_suffix(suffix: str, magic: bytes, fmt: str, kinds: Path, tmp_path: Path) -> None:
    out = tmp_path / f"out{suffix}"
    assert _run(str(kinds / "rgb.png"), str(out), *TINY_ARGS) == 0
    assert out.read_bytes().startswith(magic)
    image = _decoded(out)
    assert (image.format, image.mode, image.size) == (fmt, "RGB", (160, 128))
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left beside it


def test_jpeg_quality_is_used(kinds: Path, tmp_path: Path) -> None:
    sizes = {}
    for quality in ("40", "95"):
        assert _run(str(kinds / "rgb.png"), str(tmp_path / f"q{quality}.jpg"), "--quality", quality, *TINY_ARGS) == 0
        sizes[quality] = (tmp_path / f"q{quality}.jpg").stat().st_size
    reference = _pixels(tmp_path / "q95.jpg")
    assert sizes["40"] < sizes["95"] and np.abs(_pixels(tmp_path / "q40.jpg") - reference).mean() > 0.5


@pytest.mark.parametrize("suffix", [".png", ".webp", ".tiff"])
def test_alpha_is_upscaled_as_a_gray_image_and_kept(suffix: str, kinds: Path, tmp_path: Path) -> None:
    """The documented rule: alpha goes through the model like a gray image; the colours like the RGB photo's."""
    outputs = {}
    for name, out_suffix in (("rgba", suffix), ("rgb", ".png"), ("alpha", ".png"), ("la", suffix)):
        outputs[name] = tmp_path / f"{name}{out_suffix}"
        assert _run(str(kinds / f"{name}.png"), str(outputs[name]), *TINY_ARGS) == 0
    rgba, la = _decoded(outputs["rgba"]), _decoded(outputs["la"])
    assert rgba.mode == "RGBA" and rgba.size == (160, 128)
    assert la.mode == ("RGBA" if suffix == ".webp" else "LA")  # WebP has no gray: stored as RGBA, pixels kept
    reference_alpha = np.asarray(_decoded(outputs["alpha"]), dtype=np.int16)  # mode L
    assert reference_alpha.std() > 10  # a real, varying alpha
    for kept in (rgba, la):
        alpha = np.asarray(kept.getchannel("A"), dtype=np.int16)
        assert np.abs(alpha - reference_alpha).max() <= 1  # within one 8-bit step
    colour = np.asarray(rgba.convert("RGB"), dtype=np.int16)
    assert np.abs(colour - _pixels(outputs["rgb"])).max() <= 1


def test_gray_stays_l_and_16_bit_stays_16_bit(kinds: Path, tmp_path: Path) -> None:
    assert _run(str(kinds), str(tmp_path / "out"), *TINY_ARGS) == 0
    gray, fine = _decoded(tmp_path / "out" / "gray.png"), _decoded(tmp_path / "out" / "gray16.png")
    assert (gray.mode, gray.size) == ("L", (160, 128))
    assert (fine.mode, fine.size) == ("I;16", (160, 128))
    fine_values = np.asarray(fine, dtype=np.float64)
    assert np.any(fine_values % 257 != 0)  # values between 8-bit steps: 16 bits were written
    assert np.abs(fine_values / 257 - np.asarray(gray, dtype=np.float64)).mean() < 2  # the same picture


def test_a_16_bit_image_is_refused_as_jpeg_before_anything_is_written(
    kinds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(str(kinds), str(tmp_path / "out"), "--suffix", ".jpg", *TINY_ARGS) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot hold" in err[0] and ("rgba.png" in err[0] or "gray16.png" in err[0]), err
    assert not (tmp_path / "out").exists()


def test_exif_orientation_is_applied_and_the_rest_of_exif_kept(tmp_path: Path) -> None:
    """A camera JPEG stored sideways with Orientation 6 (rotate 90 degrees clockwise to view): the output's
    pixels are upright, with the camera's other EXIF tags and no orientation, so every viewer shows it as the
    input was shown; the upright pixels are those of the same photograph stored upright."""
    upright = Image.fromarray(data.astronaut()[100:164, 150:190])  # 40 wide, 64 high
    exif = Image.Exif()
    exif[0x010F] = "Test camera"  # Make
    exif[0x0112] = 6
    upright.rotate(90, expand=True).save(tmp_path / "sideways.jpg", quality=95, exif=exif.tobytes())
    Image.open(tmp_path / "sideways.jpg").transpose(Image.Transpose.ROTATE_270).save(tmp_path / "upright.png")
    assert _run(str(tmp_path / "sideways.jpg"), str(tmp_path / "out.png"), *TINY_ARGS) == 0
    assert _run(str(tmp_path / "upright.png"), str(tmp_path / "reference.png"), *TINY_ARGS) == 0
    out = _decoded(tmp_path / "out.png")
    assert out.size == (80, 128)  # upright: 40x64 at x2
    assert out.getexif().get(0x010F) == "Test camera" and 0x0112 not in out.getexif()
    np.testing.assert_array_equal(np.asarray(out), np.asarray(_decoded(tmp_path / "reference.png")))


def test_a_cmyk_file_gives_rgb_without_its_cmyk_profile(tmp_path: Path) -> None:
    """A CMYK JPEG carrying a profile: the output is RGB, and the profile (of another colour space) is not
    attached to it; an RGB file's profile is kept."""
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    photo = Image.fromarray(data.coffee()[100:148, 200:248])
    photo.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95, icc_profile=srgb)
    photo.save(tmp_path / "rgb.png", icc_profile=srgb)
    for name in ("cmyk.jpg", "rgb.png"):
        assert _run(str(tmp_path / name), str(tmp_path / f"out-{name}.png"), *TINY_ARGS) == 0
    cmyk, rgb = _decoded(tmp_path / "out-cmyk.jpg.png"), _decoded(tmp_path / "out-rgb.png.png")
    assert cmyk.mode == "RGB" and cmyk.size == (96, 96) and "icc_profile" not in cmyk.info
    assert rgb.info.get("icc_profile") == srgb


def test_32_bit_integer_pixels_are_refused_with_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 32-bit integer TIFF (values up to 2**31): 16 bits would clip it, so it is refused in one line."""
    values = (data.camera()[:40, :40].astype(np.int64) * 1_000_000).astype(np.int32)
    Image.fromarray(values, mode="I").save(tmp_path / "deep.tif")
    assert _run(str(tmp_path / "deep.tif"), str(tmp_path / "out.tif"), *TINY_ARGS) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "32-bit integers" in err[0] and "deep.tif" in err[0], err
    assert not (tmp_path / "out.tif").exists()


# ------------------------------------------------------------------------------------------------ refusals


@pytest.fixture
def clash(tmp_path: Path) -> Path:
    """chelsea.jpg and chelsea.png: one stem, two images."""
    folder = tmp_path / "clash"
    folder.mkdir()
    Image.fromarray(data.chelsea()[:64, :64]).save(folder / "chelsea.png")
    Image.fromarray(data.chelsea()[64:128, :64]).save(folder / "chelsea.jpg")
    return folder


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["{clash}", "{out}", "--suffix", ".png"],
            "{clash}/chelsea.jpg and {clash}/chelsea.png would both be written to {out}/chelsea.png",
        ),
        (
            ["{clash}/chelsea.png", "{clash}/chelsea.png"],
            "the output of {clash}/chelsea.png would be {clash}/chelsea.png, an input",
        ),
        (["{clash}", "{clash}"], "would be {clash}/chelsea.jpg, an input"),
        (["{clash}", "{out}/x.png"], "{clash} is a folder but the output {out}/x.png names an image"),
        (["{clash}", "{clash}/chelsea.png"], "{clash} is a folder but the output {clash}/chelsea.png is a file"),
        (["{clash}/chelsea.png", "{out}/result.gif"], "unknown output format '.gif'"),
    ],
)
def test_overwrites_collisions_and_mismatched_kinds_are_refused_with_nothing_written(
    argv: list[str], message: str, clash: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {p: p.read_bytes() for p in clash.iterdir()}
    out = tmp_path / "out"
    assert _run(*[a.format(clash=clash, out=out) for a in argv], *TINY_ARGS) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message.format(clash=clash, out=out) in err[0], err
    assert not out.exists() and {p: p.read_bytes() for p in clash.iterdir()} == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.png", "out.png"], "no such image or folder"),
        (["{photos}/chelsea.png", "out.png", "--backend", "onnxruntime", "--onnx", "none.onnx"], "no such ONNX file"),
        (["{photos}/chelsea.png", "out.png", "--backend", "tensorrt"], "needs an engine"),
        (
            ["{photos}/chelsea.png", "out.png", "--tile", "8", "--checkpoint", str(CHECKPOINT)],
            "below the model's minimum side",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    argv: list[str], message: str, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.format(photos=photos) if "{photos}" in a else a for a in argv]
    argv = [str(tmp_path / a) if a in ("out.png", "missing.png", "none.onnx") else a for a in argv]
    assert upscale.main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: upscale: ") and message in err[0], err
    assert not (tmp_path / "out.png").exists()


def test_an_unreadable_image_is_one_line_and_the_others_are_done(
    clash: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (clash / "broken.png").write_bytes((clash / "chelsea.png").read_bytes()[:300])  # a cut-off download
    (clash / "notes.png").write_text("not an image")
    assert _run(str(clash), str(tmp_path / "out"), *TINY_ARGS) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err), err
    assert "notes.png" in err[0]  # its header: found before any image is decoded
    assert "broken.png" in err[1] and err[1].count("broken.png") == 1  # its pixels: found when its turn came
    assert _listing(tmp_path / "out") == ["chelsea.jpg", "chelsea.png"]
    assert _decoded(tmp_path / "out" / "chelsea.png").size == (128, 128)


def test_skip_existing_resumes_a_run(clash: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert _run(str(clash / "chelsea.png"), str(out / "chelsea.png"), *TINY_ARGS) == 0
    done = (out / "chelsea.png").read_bytes()
    os.utime(out / "chelsea.png", (1, 1))
    capsys.readouterr()
    assert _run(str(clash), str(out), "--skip-existing", *TINY_ARGS) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"{out / 'chelsea.png'} exists: skipped" and "chelsea.jpg" in lines[1] and len(lines) == 2
    assert (out / "chelsea.png").read_bytes() == done and (out / "chelsea.png").stat().st_mtime == 1
    assert _decoded(out / "chelsea.jpg").size == (128, 128)


# ------------------------------------------------------------------------------------------------ folders stream


@pytest.fixture(scope="module")
def twelve(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve 128x128 crops of six photographs, and the first two of them in a folder of their own."""
    root = tmp_path_factory.mktemp("twelve")
    (root / "12").mkdir()
    (root / "2").mkdir()
    photographs = (
        data.astronaut(),
        data.chelsea(),
        data.coffee(),
        data.rocket(),
        data.immunohistochemistry(),
        data.hubble_deep_field(),
    )
    for i, photo in enumerate(photographs):
        for j in range(2):
            crop = Image.fromarray(photo[j * 128 : j * 128 + 128, 64:192])
            crop.save(root / "12" / f"p{2 * i + j:02d}.png")
            if 2 * i + j < 2:
                crop.save(root / "2" / f"p{2 * i + j:02d}.png")
    return root


MEASURE = r"""
import json, resource, sys, tracemalloc
import numpy, torch, PIL.Image, esc, esc_deploy.runtime.torch_runner, esc_deploy.serving.upscale
from esc_deploy import cli
tracemalloc.start()  # after the imports: numpy's arrays (images, tiles, outputs) are what it sees
code = cli.main(sys.argv[1:])
print(json.dumps({"code": code, "traced_peak": tracemalloc.get_traced_memory()[1],
                  "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def test_a_folder_streams_peak_memory_does_not_grow_with_the_number_of_images(twelve: Path, tmp_path: Path) -> None:
    """Each run is a fresh process (its own peak RSS); tracemalloc sees every numpy array, so it shows what
    the run holds at once, below the noise of torch's own memory: holding the extra images would show."""
    peaks = {}
    for count in ("2", "12"):
        argv = ["upscale", str(twelve / count), str(tmp_path / count), "--tile", "64", "--batch", "9", *TINY_ARGS]
        done = subprocess.run(
            [sys.executable, "-c", MEASURE, *argv], capture_output=True, text=True, cwd=REPO, timeout=300, check=True
        )
        peaks[count] = json.loads(done.stdout.strip().splitlines()[-1])
        assert peaks[count]["code"] == 0 and len(list((tmp_path / count).iterdir())) == int(count)
    assert 0.8 < peaks["12"]["rss_kib"] / peaks["2"]["rss_kib"] < 1.2, peaks
    ten_decoded_images = 10 * 3 * 128 * 128 * 4  # float32 planes, the least an image holds once decoded
    assert peaks["12"]["traced_peak"] - peaks["2"]["traced_peak"] < ten_decoded_images / 4, peaks


def test_ctrl_c_is_one_line_exit_130_and_leaves_no_partial_file(twelve: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "esc_deploy", "upscale", str(twelve / "12"), str(out), *TINY_ARGS]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()  # the first image is written: the run is under way
        assert " -> " in first, first + proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["interrupted"]
    written = _listing(out)
    assert 1 <= len(written) < 12 and all(not name.startswith(".") for name in written), written
    for name in written:  # every file there is a whole image
        assert _decoded(out / name).size == (256, 256)


# ------------------------------------------------------------------------------------------------ one command line


def test_every_subcommand_says_esc_deploy_sub_and_scripts_keep_their_name(capsys: pytest.CaptureFixture[str]) -> None:
    for name in cli.SUBCOMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            cli.main([name, "--help"])
        assert exit_info.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: esc-deploy {name} "), name
    script = subprocess.run(
        [sys.executable, "export/build_engine.py", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=True,
    )
    assert script.stdout.startswith("usage: build_engine.py ")
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "esc-deploy 0.1.0"
