"""Shape parsing, profile validation and the runner's in-profile check (pure Python)."""

from __future__ import annotations

import pytest

from esc_deploy.export.shape_profile import (
    ShapeOutsideProfileError,
    ShapeProfile,
    check_shape_in_profile,
    format_shape,
    parse_shape,
)

PROFILE = ShapeProfile((1, 3, 64, 64), (1, 3, 360, 640), (2, 3, 1080, 1920))


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        ("1x3x64x64", (1, 3, 64, 64)),
        ("2X3X360X640", (2, 3, 360, 640)),
        (" 1x3x1080x1920 ", (1, 3, 1080, 1920)),
    ],
)
def test_parse_shape(text: str, shape: tuple[int, ...]) -> None:
    assert parse_shape(text) == shape
    assert parse_shape(format_shape(shape)) == shape


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1x3x64", "4 dims"),
        ("1x3x64x64x1", "4 dims"),
        ("1x3x64x0", "width"),
        ("1x3xabcx64", "height"),
        ("-1x3x64x64", "batch"),
        ("1x3x6.5x64", "height"),
    ],
)
def test_parse_shape_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_shape(text)


def test_profile_parse_and_dict() -> None:
    profile = ShapeProfile.parse("1x3x64x64", "1x3x360x640", "2x3x1080x1920")
    assert profile == PROFILE
    assert profile.as_dict() == {"min": "1x3x64x64", "opt": "1x3x360x640", "max": "2x3x1080x1920"}
    assert not profile.is_static
    assert ShapeProfile.parse("1x3x64x64", "1x3x64x64", "1x3x64x64").is_static


def test_profile_needs_three_channels() -> None:
    with pytest.raises(ValueError, match=r"expected 3 channels .* found 1"):
        ShapeProfile.parse("1x1x64x64", "1x3x64x64", "1x3x64x64")


@pytest.mark.parametrize(
    ("lo", "mid", "hi", "dim"),
    [
        ("1x3x128x64", "1x3x64x64", "1x3x256x256", "height"),
        ("1x3x64x64", "1x3x64x512", "1x3x256x256", "width"),
        ("2x3x64x64", "1x3x64x64", "2x3x64x64", "batch"),
    ],
)
def test_profile_needs_min_opt_max_order(lo: str, mid: str, hi: str, dim: str) -> None:
    with pytest.raises(ValueError, match=f"profile {dim}: expected min <= opt <= max"):
        ShapeProfile.parse(lo, mid, hi)


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (2, 3, 1080, 1920), (1, 3, 100, 333), [2, 3, 64, 1920]])
def test_shape_inside_profile(shape: tuple[int, ...]) -> None:
    assert check_shape_in_profile(shape, PROFILE) == tuple(shape)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 3, 63, 64), r"height 63 not in \[64, 1080\]"),
        ((1, 3, 64, 1921), r"width 1921 not in \[64, 1920\]"),
        ((3, 3, 64, 64), r"batch 3 not in \[1, 2\]"),
        ((1, 4, 64, 64), r"channels 4 not in \[3, 3\]"),
        ((1, 3, 2000, 4000), r"height 2000 .*; width 4000"),
    ],
)
def test_shape_outside_profile(shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ShapeOutsideProfileError, match=message) as info:
        check_shape_in_profile(shape, PROFILE)
    assert "min 1x3x64x64" in str(info.value) and "max 2x3x1080x1920" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_shape_wrong_rank() -> None:
    with pytest.raises(ShapeOutsideProfileError, match="4 dims"):
        check_shape_in_profile((3, 64, 64), PROFILE)
