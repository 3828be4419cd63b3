"""Comparators: error statistics of one backend's outputs against the reference, and one PASS/FAIL line.

Statistics (per image and over all images): max, mean, median and 99th-percentile absolute error,
relative L2 error, PSNR (peak 1.0, on the raw float outputs), the share of 8-bit output values that
differ (clamp to [0, 1], * 255, round) and the smallest max-abs tolerance that would pass. Polygraphy's
``SimpleCompareFunc`` reports max/mean/median/quantile absolute and relative differences only, so these
are computed here; Polygraphy's comparator is used for runner-against-runner cross-checks
(`polygraphy_cross_check`: TensorRT against ONNX Runtime on the same graph).

Every threshold lives in `THRESHOLDS`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# Sub-normal guard for the relative L2 error and PSNR of an all-zero reference.
_TINY = 1e-30


@dataclass(frozen=True)
class Threshold:
    """What one backend must meet against torch float32; ``note`` says where the numbers come from."""

    max_abs: float
    min_psnr_db: float | None = None
    note: str = ""


def _fp16(key: str, note: str) -> Threshold:
    from esc_deploy.export.onnx_graph.fp16_search import FP16_TOLERANCES

    tolerance = FP16_TOLERANCES[key]
    return Threshold(max_abs=tolerance.max_abs, min_psnr_db=tolerance.min_psnr_db, note=note)


# The one table of parity thresholds, per backend (TensorRT per engine precision).
THRESHOLDS: dict[str, Threshold] = {
    # fp32 graphs: the golden vectors' tolerance (tests/data/golden/README.md); measured 2.7e-6 (default x4)
    # to 7.4e-6 (fp_x4) max abs on the default photographs.
    "onnxruntime-plugin": Threshold(max_abs=1e-4, note="float32: same function, reordered sums"),
    "onnxruntime-native": Threshold(max_abs=1e-4, note="float32: same function, reordered sums"),
    "tensorrt-fp32": Threshold(max_abs=1e-3, note="float32 engine; TF32 tactics may be chosen"),
    # fp16, measured on the 7 default photographs (max side 100) against torch-fp32, CPU, torch 2.13, ORT 1.31:
    #   model            torch-fp16 max abs / worst PSNR   onnxruntime-fp16 (plugin = native) max abs / worst PSNR
    #   default x4       2.40e-3 / 67.1 dB                 1.30e-3 / 70.3 dB
    #   tiny_x2          7.69e-3 / 56.5 dB                 4.76e-3 / 59.1 dB
    #   real_x4          4.06e-3 / 62.3 dB                 2.80e-3 / 63.2 dB
    #   fp_x4            1.33e-2 / 54.9 dB                 1.29e-2 / 57.1 dB  (random weights: the worst case)
    # Thresholds: ~2x the worst max abs, 10 dB below the worst PSNR (1/255 = 3.9e-3 is one 8-bit step).
    # light_x4's random weights overflow fp16 by construction (activations reach 1e12): check it in fp32 only.
    # The numbers live in export/onnx_graph/fp16_search.py, whose accuracy check of the fp16 conversion meets them.
    "torch-fp16": _fp16("torch-fp16", "float16 everywhere (softmax too)"),
    "onnxruntime-fp16-plugin": _fp16("onnxruntime-fp16", "mixed fp16, LN/softmax fp32"),
    "onnxruntime-fp16-native": _fp16("onnxruntime-fp16", "mixed fp16, LN/softmax fp32"),
    # Not measured here (no GPU): the torch-fp16 numbers until an H100 run says otherwise.
    "tensorrt-fp16": _fp16("tensorrt-fp16", "fp16 engine, LN/softmax fp32; unmeasured"),
}


@dataclass(frozen=True)
class ErrorStats:
    """Errors of ``got`` against ``ref`` over the finite elements; ``nan``/``inf`` count ``got``'s others."""

    elements: int
    max_abs: float
    mean_abs: float
    median_abs: float
    p99_abs: float
    rel_l2: float
    psnr_db: float  # inf when identical
    changed_8bit: float  # share of 8-bit values that differ, in [0, 1]
    nan: int = 0
    inf: int = 0

    @property
    def finite(self) -> bool:
        return self.nan == 0 and self.inf == 0

    def as_json(self) -> dict[str, Any]:
        return {k: json_number(v) for k, v in asdict(self).items()}


def json_number(value: Any) -> Any:
    """inf/nan as strings: strict JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def to_8bit(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def error_stats(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> ErrorStats:
    """Statistics over all elements of all (got, ref) pairs, which must have equal shapes."""
    got_parts, ref_parts = [], []
    for got, ref in pairs:
        if got.shape != ref.shape:
            raise ValueError(f"output shape {got.shape} differs from the reference's {ref.shape}")
        got_parts.append(np.asarray(got, dtype=np.float64).ravel())
        ref_parts.append(np.asarray(ref, dtype=np.float64).ravel())
    got_all, ref_all = np.concatenate(got_parts), np.concatenate(ref_parts)
    nan = int(np.isnan(got_all).sum())
    inf = int(np.isinf(got_all).sum())
    finite = np.isfinite(got_all)
    if not finite.all():
        got_all, ref_all = got_all[finite], ref_all[finite]
    if got_all.size == 0:
        nothing = float("nan")
        return ErrorStats(0, nothing, nothing, nothing, nothing, nothing, nothing, nothing, nan, inf)
    diff = np.abs(got_all - ref_all)
    mse = float(np.mean(diff * diff))
    return ErrorStats(
        elements=int(diff.size),
        max_abs=float(diff.max()),
        mean_abs=float(diff.mean()),
        median_abs=float(np.median(diff)),
        p99_abs=float(np.quantile(diff, 0.99)),
        rel_l2=float(np.linalg.norm(got_all - ref_all) / max(float(np.linalg.norm(ref_all)), _TINY)),
        psnr_db=float("inf") if mse == 0 else float(10 * np.log10(1.0 / max(mse, _TINY))),
        changed_8bit=float(np.mean(to_8bit(got_all) != to_8bit(ref_all))),
        nan=nan,
        inf=inf,
    )


@dataclass(frozen=True)
class Verdict:
    """One backend against the reference: statistics over all images, per image, and the verdict."""

    backend: str
    reference: str
    threshold_key: str
    threshold: Threshold
    stats: ErrorStats
    per_image: dict[str, ErrorStats]
    failures: tuple[str, ...] = ()
    worst_image: str = ""

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def smallest_passing_max_abs(self) -> float:
        """The smallest max-abs tolerance under which this run would pass that criterion."""
        return self.stats.max_abs

    @property
    def min_psnr_db(self) -> float:
        return min((s.psnr_db for s in self.per_image.values()), default=float("nan"))

    def line(self) -> str:
        s, t = self.stats, self.threshold
        head = f"{'PASS' if self.passed else 'FAIL'} {self.backend} vs {self.reference}"
        if not s.finite:
            return f"{head}: {'; '.join(self.failures)}"
        psnr = f", worst-image PSNR {self.min_psnr_db:.1f} dB" + (
            f" (>= {t.min_psnr_db:g})" if t.min_psnr_db is not None else ""
        )
        text = (
            f"{head}: max abs {s.max_abs:.2e} (<= {t.max_abs:g}){psnr}, "
            f"{100 * s.changed_8bit:.2f}% of 8-bit values differ; would pass at max abs >= {s.max_abs:.2e}"
        )
        return f"{text}; {'; '.join(self.failures)}" if self.failures else text

    def as_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "reference": self.reference,
            "verdict": "PASS" if self.passed else "FAIL",
            "line": self.line(),
            "failures": list(self.failures),
            "threshold": {"key": self.threshold_key, **asdict(self.threshold)},
            "smallest_passing_max_abs": json_number(self.smallest_passing_max_abs),
            "worst_image": self.worst_image,
            "stats": self.stats.as_json(),
            "per_image": {name: s.as_json() for name, s in self.per_image.items()},
        }


def compare(
    backend: str,
    outputs: Mapping[str, np.ndarray],
    reference_name: str,
    reference: Mapping[str, np.ndarray],
    *,
    threshold_key: str | None = None,
    thresholds: Mapping[str, Threshold] | None = None,
) -> Verdict:
    """``backend``'s outputs against the reference's, image by image, judged by the threshold table."""
    key = threshold_key or backend
    table = THRESHOLDS if thresholds is None else thresholds
    if key not in table:
        raise KeyError(f"no parity threshold for {key!r}; known: {', '.join(table)}")
    threshold = table[key]
    missing = sorted(set(reference) - set(outputs))
    if missing:
        raise ValueError(f"{backend} has no output for {', '.join(missing)}")
    failures: list[str] = []
    per_image: dict[str, ErrorStats] = {}
    pairs = []
    for name, ref in reference.items():
        got = outputs[name]
        if got.shape != ref.shape:
            failures.append(f"{name}: output shape {tuple(got.shape)} differs from the reference's {tuple(ref.shape)}")
            continue
        per_image[name] = error_stats([(got, ref)])
        pairs.append((got, ref))
    if not pairs:
        nothing = float("nan")
        stats = ErrorStats(0, nothing, nothing, nothing, nothing, nothing, nothing, nothing)
        return Verdict(backend, reference_name, key, threshold, stats, per_image, tuple(failures))
    stats = error_stats(pairs)
    if not stats.finite:
        bad = [n for n, s in per_image.items() if not s.finite]
        failures.insert(0, f"non-finite output: {stats.nan} NaN and {stats.inf} Inf values (in {', '.join(bad)})")
    else:
        if stats.max_abs > threshold.max_abs:
            failures.append(f"max abs error {stats.max_abs:.2e} > {threshold.max_abs:g}")
        if threshold.min_psnr_db is not None:
            low = {n: s.psnr_db for n, s in per_image.items() if s.psnr_db < threshold.min_psnr_db}
            if low:
                worst = min(low, key=lambda n: low[n])
                failures.append(f"PSNR {low[worst]:.1f} dB < {threshold.min_psnr_db:g} dB on {worst}")
    worst_image = max(per_image, key=lambda n: _severity(per_image[n]))
    return Verdict(backend, reference_name, key, threshold, stats, per_image, tuple(failures), worst_image)


def _severity(stats: ErrorStats) -> float:
    return math.inf if not stats.finite else stats.max_abs


@dataclass(frozen=True)
class CrossCheck:
    """Polygraphy's SimpleCompareFunc on two runners (one iteration per image), max-abs checked."""

    candidate: str
    baseline: str
    atol: float
    passed: bool
    per_image: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def max_abs(self) -> float:
        return max((v["max_absdiff"] for v in self.per_image.values()), default=float("nan"))

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"{verdict} {self.candidate} vs {self.baseline} (Polygraphy SimpleCompareFunc, max abs): "
            f"max abs {self.max_abs:.2e} (<= {self.atol:g})"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "baseline": self.baseline,
            "comparator": "polygraphy.comparator.SimpleCompareFunc(check_error_stat='max', rtol=0)",
            "atol": self.atol,
            "verdict": "PASS" if self.passed else "FAIL",
            "line": self.line(),
            "per_image": {n: {k: json_number(v) for k, v in d.items()} for n, d in self.per_image.items()},
        }


# What OutputCompareResult holds for a "max" check (quantiles only with check_error_stat="quantile").
POLYGRAPHY_FIELDS = ("max_absdiff", "mean_absdiff", "median_absdiff", "max_reldiff", "mean_reldiff")


def polygraphy_cross_check(
    candidate: str,
    candidate_outputs: Mapping[str, np.ndarray],
    baseline: str,
    baseline_outputs: Mapping[str, np.ndarray],
    *,
    atol: float,
) -> CrossCheck:
    """Compare two runners' outputs with Polygraphy's Comparator, image by image (one iteration each)."""
    from polygraphy.comparator import Comparator, RunResults, SimpleCompareFunc
    from polygraphy.comparator.struct import IterationResult
    from polygraphy.logger import G_LOGGER

    names = [n for n in baseline_outputs if n in candidate_outputs]
    results = RunResults()
    for runner, outputs in ((candidate, candidate_outputs), (baseline, baseline_outputs)):
        iterations = [IterationResult({"output": outputs[n]}, runner_name=runner) for n in names]
        results.append((runner, iterations))
    compare_func = SimpleCompareFunc(check_error_stat="max", atol=atol, rtol=0.0, error_quantile=0.99)
    with G_LOGGER.verbosity(G_LOGGER.CRITICAL):
        accuracy = Comparator.compare_accuracy(results, compare_func=compare_func)
    per_image: dict[str, dict[str, float]] = {}
    for result in accuracy:
        for iteration_results in result.values():
            for name, by_output in zip(names, iteration_results, strict=True):
                out = by_output["output"]
                values = {f: getattr(out, f, None) for f in POLYGRAPHY_FIELDS}
                per_image[name] = {f: float(v) for f, v in values.items() if v is not None}
    return CrossCheck(candidate, baseline, atol, bool(accuracy) and len(per_image) == len(names), per_image)
