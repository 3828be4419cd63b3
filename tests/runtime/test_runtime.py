"""The runtime layer on real data: model facts from each source, torch and ONNX Runtime runners on a photograph
through the tile plan, and image files of every kept mode written and decoded again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image
from skimage import data

from esc_deploy.runtime.facts import ModelFacts
from esc_deploy.runtime.images import cannot_hold, probe, read_image, write_image
from esc_deploy.runtime.runner import Runner, open_runner, skip_reason
from esc_deploy.runtime.tiles import plan_tiles, upscale_array
from esc_deploy.runtime.torch_runner import TorchRunner
from tests.conftest import GOLDEN_DIR

TINY = GOLDEN_DIR / "tiny_x2.pth"  # dim 16, window 8, x2: seconds per photograph on a CPU


@pytest.fixture(scope="module")
def tiny_onnx(exports, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "tiny_x2.onnx"
    onnx.save(exports.proto("tiny_x2", "native"), str(path))
    return path


@pytest.mark.xdist_group("tiny_x2")  # with the other tiny_x2 exports (tests/conftest.py)
def test_facts_are_the_same_from_checkpoint_onnx_model_and_triton_config(tiny_onnx: Path) -> None:
    from_checkpoint = ModelFacts.from_checkpoint(TINY)
    assert (from_checkpoint.scale, from_checkpoint.window, from_checkpoint.family) == (2, 8, "esc")
    from_onnx = ModelFacts.from_onnx(tiny_onnx)
    with TorchRunner.from_checkpoint(TINY) as runner:
        from_model = runner.facts
    assert {from_checkpoint.with_source(""), from_onnx.with_source(""), from_model.with_source("")} == {
        from_checkpoint.with_source("")
    }
    limited = ModelFacts(scale=2, window=8, min_hw=(16, 16), max_hw=(64, 96), max_batch=4, family="esc")
    config = {"name": "m", "max_batch_size": 4, "parameters": {k: {"string_value": v} for k, v in
                                                               limited.triton_parameters().items()}}  # fmt: skip
    assert ModelFacts.from_triton_config(config) == limited.with_source("Triton model 'm'")
    with pytest.raises(ValueError, match="does not record esc_scale, esc_window_size, esc_min_input_hw"):
        ModelFacts.from_triton_config({"name": "m"})
    with pytest.raises(ValueError, match=r"no 'esc\.config' metadata"):
        bare = onnx.load(str(tiny_onnx))
        del bare.metadata_props[:]
        onnx.save(bare, str(tiny_onnx.with_name("bare.onnx")))
        ModelFacts.from_onnx(tiny_onnx.with_name("bare.onnx"))


@pytest.mark.xdist_group("tiny_x2")
def test_torch_and_onnxruntime_runners_agree_on_a_tiled_batched_photograph(tiny_onnx: Path) -> None:
    photo = np.ascontiguousarray(data.chelsea()[40:140, 100:230].transpose(2, 0, 1)[None] / 255.0, dtype=np.float32)
    outputs = {}
    for kind in ("torch", "onnxruntime"):
        assert skip_reason(kind) is None
        with open_runner(kind, checkpoint=TINY, onnx=tiny_onnx) as runner:
            assert isinstance(runner, Runner)
            calls: list[tuple[int, ...]] = []

            def counted(x: np.ndarray, run: Runner = runner, seen: list[tuple[int, ...]] = calls) -> np.ndarray:
                seen.append(x.shape)
                return run(x)

            plan = plan_tiles(runner.facts, (100, 130), max_tile=48, overlap=16, batch=3)
            outputs[kind] = upscale_array(photo, counted, scale=2, plan=plan, min_hw=runner.facts.min_hw)
        assert outputs[kind].shape == (1, 3, 200, 260)
        assert max(s[0] for s in calls) == 3 and len(calls) < plan.count((100, 130))  # tiles went in batches
    assert np.abs(outputs["torch"] - outputs["onnxruntime"]).max() < 1e-4


def test_plan_tiles_from_facts() -> None:
    facts = ModelFacts(scale=4, window=16, min_hw=(17, 17), max_hw=(64, 64), max_batch=4, source="m")
    assert plan_tiles(facts, (200, 300)).tile == (64, 64)
    assert plan_tiles(facts, (200, 300)).align == 16 and plan_tiles(facts, (200, 300)).tiles_per_call == 4
    assert plan_tiles(facts, (200, 300), concurrency=2).tiles_per_call == 2
    assert plan_tiles(facts, (200, 300), batch=9).tiles_per_call == 4  # the model's batch limit holds
    assert plan_tiles(facts, (200, 300), max_tile=40, overlap=32).align == 1  # 40 - 32 < 16
    unlimited = ModelFacts(scale=2, window=8, min_hw=(5, 5))
    assert plan_tiles(unlimited, (30, 40)).tile == (30, 40)  # no limit known: one call
    assert plan_tiles(unlimited, (30, 40), batch=6).tiles_per_call == 6
    with pytest.raises(ValueError, match="exceeds"):
        plan_tiles(facts, (200, 300), max_tile=65)
    with pytest.raises(ValueError, match="below the model's minimum side 17"):
        plan_tiles(facts, (200, 300), max_tile=8)


def _photo_in(mode: str) -> Image.Image:
    rgb = data.astronaut()[100:164, 150:230]  # 64x80
    if mode == "RGB":
        return Image.fromarray(rgb)
    gray = Image.fromarray(rgb).convert("L")
    alpha = Image.fromarray((np.linspace(0, 255, 80)[None, :] * np.ones((64, 1))).astype(np.uint8))  # a ramp
    if mode == "RGBA":
        return Image.merge("RGBA", (*Image.fromarray(rgb).split(), alpha))
    if mode == "LA":
        return Image.merge("LA", (gray, alpha))
    if mode == "I;16":
        return Image.fromarray(data.camera()[:64, :80].astype(np.uint16) * 257 + 3)
    return gray


@pytest.mark.parametrize(("mode", "suffix"), [("RGB", ".png"), ("RGBA", ".png"), ("L", ".tiff"), ("LA", ".png"),
                                              ("I;16", ".png"), ("I;16", ".tif"), ("RGBA", ".webp")])  # fmt: skip
def test_images_keep_mode_and_pixels_through_a_write(mode: str, suffix: str, tmp_path: Path) -> None:
    source = _photo_in(mode)
    source.save(tmp_path / f"in{suffix}", **({"lossless": True} if suffix == ".webp" else {}))
    assert probe(tmp_path / f"in{suffix}").mode == mode
    picture = read_image(tmp_path / f"in{suffix}")
    assert picture.mode == mode and (picture.alpha is not None) == (mode in ("RGBA", "LA"))
    write_image(tmp_path / f"out{suffix}", picture)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left
    with Image.open(tmp_path / f"out{suffix}") as written, Image.open(tmp_path / f"in{suffix}") as original:
        assert written.mode == original.mode == mode
        np.testing.assert_array_equal(np.asarray(written), np.asarray(original))


def test_formats_that_would_lose_data_are_named() -> None:
    assert cannot_hold("RGBA", ".jpg") == "JPEG cannot hold an alpha channel (RGBA); write .png or .tiff"
    assert cannot_hold("I;16", ".webp") == "WEBP cannot hold 16-bit samples (I;16); write .png or .tiff"
    assert cannot_hold("L", ".JPEG") is None and cannot_hold("I;16", ".tiff") is None
    assert "unknown output format '.gif'" in str(cannot_hold("RGB", ".gif"))


def test_an_unreadable_image_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ValueError, match=r"^cannot read image .*bad.png: ") as info:
        probe(tmp_path / "bad.png")
    assert "\n" not in str(info.value)


def _png16(path: Path, pixels: np.ndarray, color_type: int) -> Path:
    """A real 16-bit PNG written chunk by chunk (Pillow cannot write 16-bit colour); 0: gray, 2: RGB."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    h, w = pixels.shape[:2]
    rows = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(h))
    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )
    return path


def test_images_that_would_lose_data_are_refused_and_a_colour_key_is_alpha(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb16 = _png16(tmp_path / "rgb16.png", (rng.random((6, 5, 3)) * 65535).astype(np.uint16), 2)
    gray16 = _png16(tmp_path / "gray16.png", (rng.random((6, 5)) * 65535).astype(np.uint16), 0)
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    for path, why in ((rgb16, "16 bits, which Pillow reads as 8"), (tmp_path / "anim.gif", "2 frames")):
        for read in (probe, read_image):
            with pytest.raises(ValueError, match=why):
                read(path)
    assert probe(gray16).mode == read_image(gray16).mode == "I;16"
    keyed = np.zeros((4, 4, 3), np.uint8)
    keyed[0, 0] = (1, 2, 3)
    Image.fromarray(keyed).save(tmp_path / "key.png", transparency=(1, 2, 3))
    picture = read_image(tmp_path / "key.png")
    assert picture.mode == "RGBA" and picture.alpha is not None
    assert picture.alpha[0, 0, 0, 0] == 0 and picture.alpha[0, 0, 1, 1] == 1  # the key colour is transparent
