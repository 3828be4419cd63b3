"""Which parts of ESC may run in float16: one range rule, measured on calibration inputs.

A value is safe in fp16 when its float32 calibration maximum |x| stays below ``SAFE_LIMIT``: fp16's
largest finite value (65504) divided by ``SAFE_MARGIN`` (8), the headroom left for inputs brighter or
larger than the calibration set. Everything that produces or consumes an unsafe value runs in float32;
downstream, a value is safe again once a normalisation (LayerNorm) or a small-weight layer brings it
back in range, and fp16 resumes there.

The ONNX export applies the rule node by node (export/onnx_graph/calibration.py); this module applies it to
the eager model, module by module, so that eager fp16 and engine fp16 mean the same thing.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

FP16_MAX = 65504.0
SAFE_MARGIN = 8.0
SAFE_LIMIT = FP16_MAX / SAFE_MARGIN


def is_fp16_safe(max_abs: float, limit: float = SAFE_LIMIT) -> bool:
    """The rule: finite and at most ``limit`` (NaN counts as unsafe)."""
    return bool(max_abs <= limit)


@dataclass(frozen=True)
class ModuleRange:
    """max |x| over the calibration inputs of one module's floating inputs and of its output."""

    name: str
    max_in: float
    max_out: float
    max_weight: float = 0.0  # of the module's own parameters and buffers

    @property
    def largest(self) -> float:
        return max(self.max_in, self.max_out, self.max_weight)


def _max_abs(values: Any) -> float:
    """Largest |x| over every floating tensor in ``values`` (a tensor, tuple, list or dict)."""
    if isinstance(values, Tensor):
        if not values.is_floating_point() or values.numel() == 0:
            return 0.0
        return float(values.detach().abs().amax().float())
    if isinstance(values, list | tuple):
        return max((_max_abs(v) for v in values), default=0.0)
    if isinstance(values, dict):
        return max((_max_abs(v) for v in values.values()), default=0.0)
    return 0.0


def measure_module_ranges(model: nn.Module, inputs: Iterable[Tensor]) -> dict[str, ModuleRange]:
    """Run the float32 ``model`` on each input and record every submodule's input and output range."""
    seen: dict[str, list[float]] = {}

    def hook(name: str) -> Any:
        def record(_module: nn.Module, args: Any, output: Any) -> None:
            entry = seen.setdefault(name, [0.0, 0.0])
            entry[0] = max(entry[0], _max_abs(args))
            entry[1] = max(entry[1], _max_abs(output))

        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules() if name]
    try:
        with torch.no_grad():
            for x in inputs:
                model(x.float())
    finally:
        for handle in handles:
            handle.remove()
    ranges = {name: ModuleRange(name, max_in, max_out) for name, (max_in, max_out) in seen.items()}
    for name, module in model.named_modules():
        own = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        weight = _max_abs(own)
        if name in ranges or weight > 0:
            r = ranges.get(name, ModuleRange(name, 0.0, 0.0))
            ranges[name] = ModuleRange(name, r.max_in, r.max_out, weight)
    return ranges


def fp32_modules(ranges: Mapping[str, ModuleRange], limit: float = SAFE_LIMIT, extra: Iterable[str] = ()) -> list[str]:
    """The modules the rule keeps in float32: an unsafe input, output or weight, and ``extra`` (those the
    accuracy check of the fp16 conversion adds); children of a kept module omitted. ``''`` (the whole
    model) when the root's own weights, e.g. the shared large kernel, are unsafe, or ``extra`` holds it."""
    unsafe = sorted({name for name, r in ranges.items() if not is_fp16_safe(r.largest, limit)} | set(extra))
    if "" in unsafe:
        return [""]
    kept: list[str] = []
    for name in unsafe:
        if not any(name.startswith(parent + ".") for parent in kept):
            kept.append(name)
    return kept


def _cast_floats(values: Any, dtype: torch.dtype) -> Any:
    if isinstance(values, Tensor):
        return values.to(dtype) if values.is_floating_point() else values
    if isinstance(values, tuple | list):
        return type(values)(_cast_floats(v, dtype) for v in values)
    return values


def _runs_in(dtype: torch.dtype) -> Any:
    """A forward pre-hook that casts a module's floating inputs to ``dtype``."""
    return lambda _module, args: _cast_floats(args, dtype)


def to_mixed_half(
    model: nn.Module, ranges: Mapping[str, ModuleRange], *, limit: float = SAFE_LIMIT, extra: Iterable[str] = ()
) -> tuple[nn.Module, list[str]]:
    """A float16 copy of ``model`` whose unsafe modules, and ``extra``, run in float32; returns (copy, their names).

    As in the ONNX conversion, a value is rounded to float16 where a float16 module reads it, not where a
    float32 module makes it: a kept module casts its inputs up and returns float32, every other submodule
    casts its inputs down, so two kept modules in a row pass float32 between them. The copy takes float32
    pixels, as the fp16 ONNX does: a kept first layer reads them unrounded (with activations near 1e13,
    rounding the input alone cost the ESC x3 case of issue #24 over 10 dB). The root's own weights (the
    shared large kernel, passed to every block) stay float32 for the same reason, and its own ops run
    in the dtype of what they add (PyTorch promotes a float16 and a float32 term to float32).
    """
    kept = fp32_modules(ranges, limit, extra)
    if kept == [""]:  # the root's own weights are unsafe: all float32, taking float16 inputs too
        whole = copy.deepcopy(model).float()
        whole.register_forward_pre_hook(_runs_in(torch.float32))
        return whole, kept
    mixed = copy.deepcopy(model).half()
    for key, value in model.named_parameters(recurse=False):
        setattr(mixed, key, nn.Parameter(value.detach().float().clone(), requires_grad=value.requires_grad))
    originals = dict(model.named_modules())
    for name in kept:
        # From the float32 original: a float16 round trip would turn weights above 65504 into inf.
        module = copy.deepcopy(originals[name]).float()
        mixed.set_submodule(name, module)
    for name, module in mixed.named_modules():
        inside_kept = any(name == k or name.startswith(k + ".") for k in kept)
        if not name or (inside_kept and name not in kept):
            continue
        module.register_forward_pre_hook(_runs_in(torch.float32 if inside_kept else torch.float16))
    return mixed, kept
