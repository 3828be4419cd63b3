"""``ModelFacts``: what every stage after export needs to know about a model, in one frozen record.

The exporter writes the model's ``ESCConfig`` into the ONNX metadata, the engine build copies it into the
sidecar, and the Triton repository writes it into config.pbtxt ``parameters``; each reader below turns its
source into the same record, so no stage asks for a fact an earlier one knew.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from esc.config import ESCConfig
    from esc.models import ESCBase
    from esc_deploy.export.trt.sidecar import EngineSidecar

# The Triton model config's parameters (config.pbtxt), written by serving/model_repository/writer.py.
# serving/model_repository/python_model.py runs inside Triton without this package and spells them again.
PARAM_SCALE = "esc_scale"
PARAM_WINDOW = "esc_window_size"
PARAM_MIN_HW = "esc_min_input_hw"
PARAM_MAX_HW = "esc_max_input_hw"
PARAM_FAMILY = "esc_family"

HW = tuple[int, int]


@dataclass(frozen=True)
class ModelFacts:
    """A model as its runners see it. Sides are input pixels; ``max_hw`` None: no limit but memory."""

    scale: int
    window: int  # attention window: tiles start on its grid so that they share the image's windows
    min_hw: HW  # the smallest input (smaller inputs and tiles are reflect-padded)
    max_hw: HW | None = None  # the largest input (a TensorRT profile, a Triton model's limit): tile above it
    max_batch: int = 0  # the largest batch per call; 0: any
    precision: str = "fp32"
    family: str = ""
    channels: int = 3
    source: str = ""  # where the facts came from, for messages

    def __post_init__(self) -> None:
        if self.scale < 1 or self.window < 1 or min(self.min_hw) < 1:
            raise ValueError(f"{self.source or 'model'}: scale, window and minimum input must be positive: {self}")

    @property
    def min_side(self) -> int:
        return max(self.min_hw)

    @property
    def max_side(self) -> int | None:
        """The largest square tile side the model accepts, or None."""
        return None if self.max_hw is None else min(self.max_hw)

    def with_source(self, source: str) -> ModelFacts:
        return dataclasses.replace(self, source=source)

    # -------------------------------------------------------------------------------------------- readers

    @classmethod
    def from_config(
        cls,
        config: ESCConfig,
        *,
        source: str,
        min_hw: HW | None = None,
        max_hw: HW | None = None,
        max_batch: int = 0,
        precision: str = "fp32",
    ) -> ModelFacts:
        """The model's own facts; ``min_hw`` (default: its minimum side) and the rest limit it further."""
        side = config.min_side
        return cls(scale=config.scale, window=config.window_size, min_hw=min_hw or (side, side), max_hw=max_hw,
                   max_batch=max_batch, precision=precision, family=config.family, source=source)  # fmt: skip

    @classmethod
    def from_model(cls, model: ESCBase, *, source: str = "torch model", precision: str = "fp32") -> ModelFacts:
        return cls.from_config(model.config, source=source, precision=precision)

    @classmethod
    def from_checkpoint(cls, path: Path) -> ModelFacts:
        """From the state dict's tensor shapes (esc.loading.infer_config); no network is built."""
        from esc.loading import infer_config, read_state_dict

        return cls.from_config(infer_config(read_state_dict(path)), source=str(path))

    @classmethod
    def from_onnx(cls, path: Path) -> ModelFacts:
        """From the ``esc.config`` metadata the exporter writes (ValueError, one line, without it)."""
        from esc_deploy.export.onnx_graph.metadata import read_model_config

        return cls.from_config(read_model_config(path), source=str(path))

    @classmethod
    def from_sidecar(cls, sidecar: EngineSidecar, *, source: str = "") -> ModelFacts:
        """From an engine's sidecar: the model's config, limited by the engine's optimisation profile."""
        profile, side = sidecar.profile, sidecar.model.min_side
        return cls.from_config(
            sidecar.model,
            source=source or sidecar.engine,
            min_hw=(max(profile.min[2], side), max(profile.min[3], side)),
            max_hw=(profile.max[2], profile.max[3]),
            max_batch=profile.max[0],
            precision=sidecar.precision.value,
        )

    @classmethod
    def from_engine(cls, engine: Path) -> ModelFacts:
        from esc_deploy.export.trt.sidecar import EngineSidecar

        return cls.from_sidecar(EngineSidecar.read(engine), source=str(engine))

    @classmethod
    def from_triton_config(cls, config: dict[str, Any]) -> ModelFacts:
        """From Triton's model config as JSON (HTTP ``get_model_config``, gRPC's ``as_json=True``'s ``config``)."""
        name = str(config.get("name", "?"))
        params = {k: str(v.get("string_value", "")) for k, v in (config.get("parameters") or {}).items()}
        missing = [key for key in (PARAM_SCALE, PARAM_WINDOW, PARAM_MIN_HW) if key not in params]
        if missing:
            raise ValueError(
                f"model {name!r} does not record {', '.join(missing)} in its config: "
                "write its repository with serving/make_triton_repo.py"
            )
        try:
            scale, window = int(params[PARAM_SCALE]), int(params[PARAM_WINDOW])
        except ValueError:
            raise ValueError(f"model {name!r}: {PARAM_SCALE} and {PARAM_WINDOW} must be integers") from None
        return cls(
            scale=scale,
            window=window,
            min_hw=_hw(params[PARAM_MIN_HW], PARAM_MIN_HW, name),
            max_hw=_hw(params[PARAM_MAX_HW], PARAM_MAX_HW, name) if PARAM_MAX_HW in params else None,
            max_batch=int(config.get("max_batch_size", 0)),
            family=params.get(PARAM_FAMILY, ""),
            source=f"Triton model {name!r}",
        )

    # -------------------------------------------------------------------------------------------- writers

    def triton_parameters(self) -> dict[str, str]:
        """The config.pbtxt parameters that ``from_triton_config`` reads back."""
        params = {PARAM_MIN_HW: f"{self.min_hw[0]},{self.min_hw[1]}"}
        if self.max_hw is not None:
            params[PARAM_MAX_HW] = f"{self.max_hw[0]},{self.max_hw[1]}"
        params.update({PARAM_SCALE: str(self.scale), PARAM_WINDOW: str(self.window), PARAM_FAMILY: self.family})
        return params


def _hw(text: str, key: str, model: str) -> HW:
    try:
        h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"model {model!r}: parameter {key} must be 'H,W', found {text!r}") from None
    return h, w
