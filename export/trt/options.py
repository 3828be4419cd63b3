"""Every option of an engine build, in one frozen dataclass (after vs-mlrt's `scripts/vsmlrt.py`).

The same object drives the builder configuration (`trt.build`), the trtexec line
(`trt.trtexec`), the engine's default file name and cache key, and the sidecar JSON
(`trt.sidecar`). Each field says in its metadata what it is:

- ``setting``: changes the engine's bytes; its value goes into the cache key and the sidecar as is.
- ``identity``: a file whose content changes the engine; the key and sidecar hold its sha256.
- ``location``: where things are written or cached; never part of the key.
- ``choice``: picks the runtime or the target; the key and sidecar hold what it resolved to (flavour and
  version, GPU or compute capabilities), not the choice itself.

Adding an option means adding a field here (with its kind) and a flag in `trt.cli`; the key and the
sidecar pick it up without further edits.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from esc_deploy.common.defaults import DEFAULT_ONNX, DEFAULT_PLUGIN, OUTPUT_DIR
from esc_deploy.common.files import sha256_file
from esc_deploy.export.precision import Precision as Precision  # the engine modules take it from here
from esc_deploy.export.shape_profile import ShapeProfile
from esc_deploy.export.tensor_names import INPUT_NAME, OUTPUT_NAME
from esc_deploy.export.trt.env import RUNTIME_CHOICES, RuntimeChoice

FieldKind = Literal["setting", "identity", "location", "choice"]
AttentionChoice = Literal["auto", "plugin", "tensorrt"]
ATTENTION_CHOICES: tuple[AttentionChoice, ...] = ("auto", "plugin", "tensorrt")

DEFAULT_PROFILE = ShapeProfile(min=(1, 3, 64, 64), opt=(1, 3, 360, 640), max=(1, 3, 1080, 1920))

SIDECAR_SUFFIX = ".json"
ENGINE_SUFFIX = ".engine"


# What `--fp16` selects: on TensorRT 10.x FP16 is a builder flag (with LayerNorm/softmax and the calibrated
# nodes pinned to fp32); on 11.x and TensorRT for RTX, building the fp16 mixed-precision ONNX, strongly typed.


def _kind(kind: FieldKind) -> dict[str, FieldKind]:
    return {"kind": kind}


@dataclass(frozen=True)
class EngineOptions:
    """One engine build. Paths are as given; `resolved()` makes them absolute for the sidecar."""

    onnx: Path = field(default=DEFAULT_ONNX, metadata=_kind("identity"))
    runtime: RuntimeChoice = field(default="auto", metadata=_kind("choice"))
    # TensorRT for RTX only, e.g. ("8.6", "8.9"); None: the local GPU's, else RTX_DEFAULT_TARGETS.
    compute_capabilities: tuple[str, ...] | None = field(default=None, metadata=_kind("choice"))
    plugin: Path | None = field(default=DEFAULT_PLUGIN, metadata=_kind("identity"))
    # Who computes the window attention: the plugin (needs its library), TensorRT's own fused kernel (no
    # plugin: the plugin export's nodes become standard ops), or auto (the plugin where its library is found).
    attention: AttentionChoice = field(default="auto", metadata=_kind("choice"))
    precision: Precision = field(default=Precision.FP32, metadata=_kind("setting"))
    # fp16's calibration (export/onnx_graph/calibration_set.py): 'auto' (bundled photographs), 'off', or a folder.
    calibration: str = field(default="auto", metadata=_kind("setting"))
    profile: ShapeProfile = field(default=DEFAULT_PROFILE, metadata=_kind("setting"))
    # None: TensorRT's default workspace limit (the device's total memory).
    workspace_gb: float | None = field(default=None, metadata=_kind("setting"))
    input_name: str = field(default=INPUT_NAME, metadata=_kind("setting"))
    output_name: str = field(default=OUTPUT_NAME, metadata=_kind("setting"))
    timing_cache: Path | None = field(default=None, metadata=_kind("location"))
    # None: `default_engine_path` (name carries the ONNX hash, TensorRT version and GPU).
    output: Path | None = field(default=None, metadata=_kind("location"))

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIME_CHOICES:
            raise ValueError(f"runtime: expected one of {list(RUNTIME_CHOICES)}, found {self.runtime!r}")
        if self.attention not in ATTENTION_CHOICES:
            raise ValueError(f"attention: expected one of {list(ATTENTION_CHOICES)}, found {self.attention!r}")
        if self.compute_capabilities is not None and not self.compute_capabilities:
            raise ValueError("compute capability: expected at least one, like 8.6, found none")
        if not isinstance(self.precision, Precision):
            raise ValueError(f"precision: expected one of {[p.value for p in Precision]}, found {self.precision!r}")
        from esc_deploy.export.onnx_graph.calibration_set import check_calibration_choice

        check_calibration_choice(self.calibration)
        if self.workspace_gb is not None and not self.workspace_gb > 0:
            raise ValueError(f"workspace: expected a positive number of GiB, found {self.workspace_gb}")
        for name in ("input_name", "output_name"):
            if not getattr(self, name):
                raise ValueError(f"{name}: expected a tensor name, found an empty string")

    @property
    def workspace_bytes(self) -> int | None:
        return None if self.workspace_gb is None else int(self.workspace_gb * (1 << 30))

    def fields_of_kind(self, kind: FieldKind) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["kind"] == kind}

    def settings(self) -> dict[str, Any]:
        """The `setting` fields as JSON values: what the cache key and the sidecar record."""
        return {name: _jsonable(value) for name, value in self.fields_of_kind("setting").items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, ShapeProfile):
        return value.as_dict()
    if isinstance(value, Path):
        return str(value)
    return value


def identity_hashes(options: EngineOptions) -> dict[str, str | None]:
    """{'onnx': sha256, 'plugin': sha256 or None}: the `identity` fields by content."""
    return {
        name: (None if path is None else sha256_file(path)) for name, path in options.fields_of_kind("identity").items()
    }


def cache_key(settings: dict[str, Any], identities: dict[str, str | None], tensorrt_version: str, gpu_name: str) -> str:
    """sha256 over everything that makes two engines differ; same inputs, same key.

    `tensorrt_version` names the flavour too ('tensorrt-rtx 1.7.1.116'); `gpu_name` is the GPU built on
    or the compute capabilities built for."""
    payload = {"settings": settings, "identities": identities, "tensorrt": tensorrt_version, "gpu": gpu_name}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def slug(text: str) -> str:
    """'NVIDIA GeForce RTX 4090' -> 'nvidia-geforce-rtx-4090': safe in a file name."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-") or "unknown"


def default_engine_name(options: EngineOptions, onnx_sha256: str, key: str, runtime_tag: str, target: str) -> str:
    """'<onnx stem>_<precision>_onnx<hash8>_<trt10.13.0.35|rtx1.7.1.116>_<gpu or sm86-sm89>_<key8>.engine'."""
    return (
        f"{options.onnx.stem}_{options.precision.value}_onnx{onnx_sha256[:8]}"
        f"_{runtime_tag}_{slug(target)}_{key[:8]}{ENGINE_SUFFIX}"
    )


def engine_path(options: EngineOptions, onnx_sha256: str, key: str, runtime_tag: str, target: str) -> Path:
    if options.output is not None:
        return options.output
    return OUTPUT_DIR / default_engine_name(options, onnx_sha256, key, runtime_tag, target)


def sidecar_path(engine: Path) -> Path:
    """'x.engine' -> 'x.engine.json' (beside the engine, never mistaken for another engine's)."""
    return engine.with_name(engine.name + SIDECAR_SUFFIX)


def build_log_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".build.log")


def fp16_onnx_path(src: Path) -> Path:
    """Where the fp16 mixed-precision copy of an fp32 ONNX goes (TensorRT 11.x): 'm.onnx' -> 'm.fp16.onnx'."""
    return src.with_name(f"{src.stem}.fp16{src.suffix or '.onnx'}")
