"""Comparators: statistics, verdict lines, non-finite outputs, and agreement with Polygraphy."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from esc_deploy.validation.accuracy.stats import THRESHOLDS, Threshold, compare, error_stats, polygraphy_cross_check


def _pair(seed: int = 0, noise: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = rng.random((1, 3, 20, 24), dtype=np.float32)
    return (ref + rng.normal(0, noise, ref.shape)).astype(np.float32), ref


def test_statistics_by_hand() -> None:
    ref = np.full((1, 3, 2, 2), 0.5, dtype=np.float32)
    got = ref.copy()
    got[0, 0, 0, 0] += 0.1  # one value off by 0.1 (25.5 8-bit steps)
    s = error_stats([(got, ref)])
    assert s.max_abs == pytest.approx(0.1) and s.median_abs == 0.0
    assert s.mean_abs == pytest.approx(0.1 / 12)
    assert s.psnr_db == pytest.approx(10 * math.log10(12 / 0.01), rel=1e-5)
    assert s.changed_8bit == pytest.approx(1 / 12)
    assert s.rel_l2 == pytest.approx(0.1 / math.sqrt(12 * 0.25), rel=1e-5)
    assert error_stats([(ref, ref)]).psnr_db == math.inf


def test_our_statistics_agree_with_polygraphy() -> None:
    got, ref = _pair()
    ours = error_stats([(got, ref)])
    check = polygraphy_cross_check("a", {"img": got}, "b", {"img": ref}, atol=1.0)
    theirs = check.per_image["img"]
    assert check.passed
    assert theirs["max_absdiff"] == pytest.approx(ours.max_abs, rel=1e-6)
    assert theirs["mean_absdiff"] == pytest.approx(ours.mean_abs, rel=1e-5)
    assert theirs["median_absdiff"] == pytest.approx(ours.median_abs, rel=1e-5)
    assert not polygraphy_cross_check("a", {"img": got}, "b", {"img": ref}, atol=1e-6).passed


def test_verdict_line_and_smallest_passing_tolerance() -> None:
    got, ref = _pair(noise=2e-5)
    verdict = compare("onnxruntime-plugin", {"x": got}, "torch-fp32", {"x": ref})
    assert verdict.passed and verdict.line().startswith("PASS onnxruntime-plugin vs torch-fp32: max abs")
    table = {"onnxruntime-plugin": Threshold(max_abs=verdict.smallest_passing_max_abs * 0.99)}
    tight = compare("onnxruntime-plugin", {"x": got}, "torch-fp32", {"x": ref}, thresholds=table)
    assert not tight.passed and tight.line().startswith("FAIL") and "max abs error" in tight.line()
    json.dumps(tight.as_json(), allow_nan=False)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_output_fails_with_its_own_message(bad: float) -> None:
    got, ref = _pair(noise=0.0)
    got[0, 1, 3, 4] = bad
    verdict = compare("torch-fp16", {"cat": got, "dog": ref.copy()}, "torch-fp32", {"cat": ref, "dog": ref})
    assert not verdict.passed
    assert verdict.failures[0].startswith("non-finite output: ") and "(in cat)" in verdict.failures[0]
    assert verdict.worst_image == "cat"
    json.dumps(verdict.as_json(), allow_nan=False)


def test_psnr_threshold_and_shape_mismatch() -> None:
    got, ref = _pair(noise=2e-2)  # ~34 dB
    verdict = compare("onnxruntime-fp16-native", {"x": got}, "torch-fp32", {"x": ref})
    assert THRESHOLDS["onnxruntime-fp16-native"].min_psnr_db is not None
    assert any("PSNR" in f for f in verdict.failures)
    shape = compare("onnxruntime-plugin", {"x": got[..., :-1]}, "torch-fp32", {"x": ref})
    assert not shape.passed and "shape" in shape.failures[0]
