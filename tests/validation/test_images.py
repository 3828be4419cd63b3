"""Parity inputs: real photographs shrunk to low-resolution model inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from esc_deploy.validation.images import DEFAULT_IMAGES, DEFAULT_MAX_SIDE, load_inputs, low_res_size, to_low_res


def test_default_inputs_are_bundled_photographs_divided_by_the_scale() -> None:
    inputs = load_inputs(scale=4, min_side=17)
    assert [i.name for i in inputs] == list(DEFAULT_IMAGES)
    for image in inputs:
        h, w = image.size
        assert image.pixels.shape == (1, 3, h, w) and image.pixels.dtype == np.float32
        assert image.pixels.min() >= 0.0 and image.pixels.max() <= 1.0
        assert max(h, w) <= DEFAULT_MAX_SIDE
        assert h % 32 and w % 32 and h % 8 and w % 8  # windows never tile the default inputs exactly
        assert image.pixels.std() > 0.02  # a photograph, not a flat field
    grass = next(i for i in inputs if i.name == "grass")  # grayscale in scikit-image: repeated to RGB
    assert np.array_equal(grass.pixels[0, 0], grass.pixels[0, 2])


def test_scale_division_without_a_cap() -> None:
    assert low_res_size(300, 451, scale=4, max_side=None, min_side=17) == (75, 113)
    assert low_res_size(512, 512, scale=2, max_side=100, min_side=5) == (100, 100)
    image = to_low_res(data.coffee(), "coffee", scale=4, max_side=None, min_side=17)
    assert image.size == (100, 150) and image.source_size == (400, 600)


def test_too_small_an_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="sides >= 17"):
        low_res_size(64, 64, scale=4, max_side=None, min_side=17)


def test_folder_of_png_and_jpeg(tmp_path: Path) -> None:
    Image.fromarray(data.astronaut()).save(tmp_path / "a.png")
    Image.fromarray(data.camera()).save(tmp_path / "b.jpg")  # grayscale JPEG
    (tmp_path / "notes.txt").write_text("not an image")
    inputs = load_inputs(scale=2, min_side=5, folder=tmp_path, max_side=40)
    assert [(i.name, i.size) for i in inputs] == [("a", (40, 40)), ("b", (40, 40))]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"no \.png"):
        load_inputs(scale=2, min_side=5, folder=empty)
