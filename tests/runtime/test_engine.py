"""The engine runner's part that needs no GPU: the profile read back from an engine's dimensions."""

from __future__ import annotations

import pytest

from esc_deploy.export.shape_profile import ShapeProfile
from esc_deploy.runtime.engine import profile_from_dims

PROFILE = ShapeProfile((1, 3, 64, 64), (1, 3, 360, 640), (2, 3, 1080, 1920))


def test_profile_from_engine_dims() -> None:
    assert profile_from_dims([[1, 3, 64, 64], (1, 3, 360, 640), (2, 3, 1080, 1920)]) == PROFILE
    with pytest.raises(ValueError, match=r"\[min, opt, max\]"):
        profile_from_dims([[1, 3, 64, 64]])
    with pytest.raises(ValueError, match="NCHW"):
        profile_from_dims([[1, 3, 64], [1, 3, 64], [1, 3, 64]])
