"""The one spelling of numeric precision, from the ONNX export to the engines and the reports."""

from __future__ import annotations

from enum import Enum


class Precision(str, Enum):
    """fp32, or fp16 mixed precision under the calibrated rule of esc/fp16.py.

    A str: compares equal to 'fp16', serialises to JSON and formats as its value.
    """

    FP32 = "fp32"
    FP16 = "fp16"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


def as_precision(value: str | Precision, what: str = "precision") -> Precision:
    """'fp16' -> Precision.FP16; ValueError naming ``what`` for anything else."""
    try:
        return Precision(value)
    except ValueError:
        raise ValueError(f"{what}: expected one of {[p.value for p in Precision]}, found {value!r}") from None
