"""Eager PyTorch as a runner: each attention (naive, sdpa, flex, fused), float32 or float16, CPU or CUDA."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from esc_deploy.runtime.facts import ModelFacts
from esc_deploy.runtime.runner import RunnerBase

if TYPE_CHECKING:
    from esc.models import ESCBase


class TorchRunner(RunnerBase):
    """One model in eval mode. ``prepared``: the model is used as it is (already on its device and dtypes,
    e.g. parity's mixed fp16 model) and is given float32 pixels, rounding where its float16 modules read
    them (esc.fp16.to_mixed_half); otherwise a copy is moved to ``device`` in ``precision``."""

    def __init__(
        self,
        model: ESCBase,
        *,
        device: str = "cpu",
        precision: str = "fp32",
        prepared: bool = False,
        source: str = "torch model",
    ) -> None:
        import torch

        if precision not in ("fp32", "fp16"):
            raise ValueError(f"precision must be fp32 or fp16, found {precision!r}")
        self.device = torch.device(device)
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.model = model.eval() if prepared else copy.deepcopy(model).eval().to(self.device, self.dtype)
        self.input_dtype = torch.float32 if prepared else self.dtype
        self.facts = ModelFacts.from_model(model, source=source, precision=precision)

    @classmethod
    def from_checkpoint(
        cls, checkpoint: Path | None, *, attention: str | None = None, device: str = "cpu", precision: str = "fp32"
    ) -> TorchRunner:
        """An official checkpoint (loaded with weights_only), or None for the seeded default model."""
        import esc

        if checkpoint is None:
            from esc_deploy.common.defaults import default_model

            model = default_model()
            source = "the seeded default model"
        else:
            if not checkpoint.is_file():
                raise ValueError(f"{checkpoint}: no such checkpoint")
            model = esc.load_model(checkpoint, device=device, attention=attention)
            source = str(checkpoint)
        return cls(model, device=device, precision=precision, prepared=precision == "fp32", source=source)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            y = self.model(torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, self.input_dtype))
        return self.checked(batch, y.float().cpu().numpy())

    def describe(self) -> str:
        return f"eager PyTorch, {self.dtype}, {self.device}, attention {self.model.attention} ({self.facts.source})"


@functools.cache
def torch_cpu_half_works() -> bool:
    """Whether this torch runs float16 convolution, layer norm and softmax on the CPU (2.13 does)."""
    import torch
    import torch.nn.functional as F

    try:
        x = torch.rand(1, 4, 9, 9, dtype=torch.float16)
        y = F.conv2d(x, torch.rand(4, 4, 3, 3, dtype=torch.float16), padding=1)
        y = F.layer_norm(y.permute(0, 2, 3, 1), (4,)).softmax(-1)
        return bool(torch.isfinite(y).all())
    except RuntimeError:
        return False
