"""ESC as a spandrel architecture, so that spandrel-based tools (chaiNNer, ComfyUI) load the official ``.pth``::

    import esc.spandrel, spandrel
    esc.spandrel.register()                      # once; idempotent
    model = spandrel.ModelLoader().load_from_file("ESC_light_X4.pth")
    model.scale, model.size_requirements          # 4, SizeRequirements(minimum=17)

Detection, hyperparameters and the variants refused are those of ``esc.loading`` (not repeated here).
``supports_half`` is the fp16 rule of ``esc.fp16`` applied to the loaded weights on one calibration
input: a model whose every module stays within the rule's limit runs in plain fp16, which is what
spandrel's ``.half()`` means. spandrel is optional: it is imported only by ``register()`` and the
architecture class, never by ``import esc``.
"""

from __future__ import annotations

from typing import Any

import torch

from esc.config import PRESETS, ESCConfig, preset_config
from esc.fp16 import fp32_modules, measure_module_ranges
from esc.loading import CheckpointError, UnsupportedVariantError, detect_family, infer_config, read_state_dict
from esc.models import ESCBase, create_model

ARCH_ID = "ESC"
# The calibration input of supports_half: two windows square, full-contrast stripes over a ramp, so that
# every block sees strong edges and the brightest values the [0, 1] range allows.
CALIBRATION_SIDE = 64


def is_esc_state(state: dict[str, Any]) -> bool:
    """True for the state dict of any ESC family (wrapped or not), including variants ``load`` refuses with
    a reason (spandrel's detection must not miss an architecture's checkpoints; ``load`` then says why)."""
    try:
        detect_family(read_state_dict(state))
    except UnsupportedVariantError:
        return True
    except CheckpointError:
        return False
    return True


def preset_name(config: ESCConfig) -> str | None:
    """The published model this config is (``esc-light``, ...), or None for another configuration."""
    for name in PRESETS:
        try:
            if preset_config(name, scale=config.scale) == config:
                return name
        except ValueError:  # a preset that does not exist at this scale (esc-real at x2)
            continue
    return None


def calibration_input(side: int = CALIBRATION_SIDE) -> torch.Tensor:
    """A deterministic ``1x3xSxS`` image in [0, 1]: vertical stripes of 0 and 1 over a diagonal ramp."""
    ramp = torch.linspace(0, 1, side)
    stripes = (torch.arange(side) // 4 % 2).float()
    rows = ramp[:, None].expand(side, side)
    columns = stripes[None, :].expand(side, side)
    falling = ramp.flip(0)[None, :].expand(side, side)
    return torch.stack([rows, columns, falling])[None].contiguous()  # (1, 3, S, S)


def fp16_safe(model: ESCBase) -> bool:
    """The fp16 rule (esc/fp16.py) keeps no module in float32 on the calibration input."""
    return not fp32_modules(measure_module_ranges(model, [calibration_input()]))


def tags(config: ESCConfig) -> list[str]:
    """Short descriptions in spandrel's style; ``tile=k*W`` is the tiling hint: tiles whose sides are
    multiples of the window need no padding inside the network."""
    found = [preset_name(config) or config.family, f"{config.dim}dim", f"{config.n_blocks}nb"]
    return [*found, f"{config.window_size}w", f"tile=k*{config.window_size}"]


def _import_spandrel() -> Any:
    try:
        import spandrel
    except ImportError as error:
        raise ImportError("esc.spandrel needs spandrel: pip install 'esc-deploy[spandrel]'") from error
    return spandrel


def _architecture_class() -> type:
    spandrel = _import_spandrel()

    class ESCArch(spandrel.Architecture[ESCBase]):  # type: ignore[name-defined]  # spandrel: imported above
        """ESC, ESC-light, ESC-XL, ESC-FP and ESC-Real (the default upsampler) from official checkpoints."""

        def __init__(self) -> None:
            super().__init__(id=ARCH_ID, name="ESC", detect=is_esc_state)

        def load(self, state_dict: dict[str, Any]) -> Any:  # spandrel.ImageModelDescriptor[ESCBase]
            state = read_state_dict(state_dict)
            config = infer_config(state)
            model = create_model(config)
            model.load_state_dict(state)
            model.eval()
            return spandrel.ImageModelDescriptor(
                model,
                state,
                architecture=self,
                purpose="SR",
                tags=tags(config),
                supports_half=fp16_safe(model),
                supports_bfloat16=True,
                scale=config.scale,
                input_channels=3,
                output_channels=3,
                # No multiple-of: the network reflect-pads to its window itself; a side must exceed the padding.
                size_requirements=spandrel.SizeRequirements(minimum=config.min_side),
                tiling=spandrel.ModelTiling.SUPPORTED,
            )

    return ESCArch


def architecture() -> Any:  # a spandrel.Architecture[ESCBase]; spandrel stays optional, so not named here
    """A new ESC architecture object (for a registry of one's own)."""
    return _architecture_class()()


def register(registry: Any = None) -> None:
    """Add ESC to ``registry`` (a spandrel.ArchRegistry; spandrel's main registry by default); a second call
    changes nothing."""
    spandrel = _import_spandrel()

    target = spandrel.MAIN_REGISTRY if registry is None else registry
    if ARCH_ID not in target:
        target.add(spandrel.ArchSupport.from_architecture(architecture()))
