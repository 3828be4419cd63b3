"""The sidecar written next to every engine: one typed record, one writer (the build), one reader.

An engine only runs with the TensorRT flavour and version that built it, on a GPU it was built for, with
the plugin library whose serialized fields it holds; the sidecar records all of that so that a mismatch
is one clear error instead of a deserialization failure or silent wrong output. It also carries the
model's facts (`ESCConfig`, from the ONNX metadata) on to the engine runner, the Triton repository and
its clients.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esc.config import ESCConfig
from esc_deploy.common.files import atomic_write_json
from esc_deploy.export import plugin_contract
from esc_deploy.export.onnx_graph.metadata import config_from_dict
from esc_deploy.export.shape_profile import ShapeProfile, parse_shape
from esc_deploy.export.trt.attention_report import AttentionBlock
from esc_deploy.export.trt.env import Flavour, GpuInfo
from esc_deploy.export.trt.options import Precision, sidecar_path

SIDECAR_FORMAT = 4  # 3: the attention path and each block's attention implementation; 4: the fp16 plan's cost


@dataclass(frozen=True)
class FileRecord:
    path: str
    sha256: str


@dataclass(frozen=True)
class PluginRecord:
    """The plugin library an engine was built with, and the node contract it implements."""

    path: str
    sha256: str
    op_type: str = plugin_contract.OP_TYPE
    domain: str = plugin_contract.DOMAIN
    version: str = plugin_contract.PLUGIN_VERSION
    namespace: str = plugin_contract.PLUGIN_NAMESPACE


@dataclass(frozen=True)
class BuildTarget:
    """Where the engine runs: the GPU it was built on, or (TensorRT for RTX) the compute capabilities chosen."""

    gpu: GpuInfo | None
    compute_capabilities: tuple[str, ...]

    def describe(self) -> str:
        if self.gpu is not None:
            return f"{self.gpu.name} (sm {self.gpu.compute_capability_text})"
        return "compute capabilities " + ", ".join(self.compute_capabilities)

    @property
    def slug(self) -> str:
        """The engine file name's target part: the GPU's name, or 'sm86-sm89'."""
        if self.gpu is not None:
            return self.gpu.name
        return "-".join("sm" + cc.replace(".", "") for cc in self.compute_capabilities)


@dataclass(frozen=True)
class EngineSidecar:
    """Everything known about one built engine."""

    engine: str  # the engine's file name
    cache_key: str
    runtime: Flavour
    runtime_version: str
    target: BuildTarget
    network_typing: str
    precision: Precision
    profile: ShapeProfile
    input_name: str
    output_name: str
    workspace_gb: float | None
    model: ESCConfig
    onnx: FileRecord
    built_onnx: FileRecord
    plugin: PluginRecord | None
    plugin_layers: tuple[str, ...]
    built_at: str
    build_seconds: float
    # 'plugin' or 'tensorrt'; per block, what the builder's layer report shows (trt/attention_report.py).
    attention: str = "plugin"
    attention_blocks: tuple[AttentionBlock, ...] = ()
    fused_attention_blocks: int = 0  # plugin layers count as fused: == model.n_blocks when every block is
    # The built fp16 file's plan (export/onnx_graph/fp16.py fp16_cost): units kept float32 by range and by
    # accuracy, fp16 shares, calibration error; None for a float32 file.
    fp16: dict[str, Any] | None = None
    format: int = SIDECAR_FORMAT

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["runtime"] = self.runtime.value
        data["precision"] = self.precision.value
        data["profile"] = self.profile.as_dict()
        gpu = self.target.gpu
        data["target"] = {
            "gpu": None if gpu is None else {"name": gpu.name, "compute_capability": gpu.compute_capability_text},
            "compute_capabilities": list(self.target.compute_capabilities),
        }
        data["plugin_layers"] = list(self.plugin_layers)
        data["attention_blocks"] = [dataclasses.asdict(b) for b in self.attention_blocks]
        return data

    @classmethod
    def from_json(cls, data: Any, source: str) -> EngineSidecar:
        """Strict: every field present and of its type; ValueError naming `source` otherwise."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object, found {type(data).__name__}")
        if data.get("format") != SIDECAR_FORMAT:
            raise ValueError(
                f"{source}: expected sidecar format {SIDECAR_FORMAT}, found {data.get('format')!r}; "
                "rebuild the engine with `python export/build_engine.py`"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        if set(data) != names:
            missing, extra = sorted(names - set(data)), sorted(set(data) - names)
            raise ValueError(
                f"{source}: sidecar fields differ from format {SIDECAR_FORMAT} (missing {missing}, extra {extra})"
            )
        try:
            return cls(
                engine=_typed(data["engine"], str),
                cache_key=_typed(data["cache_key"], str),
                runtime=Flavour(data["runtime"]),
                runtime_version=_typed(data["runtime_version"], str),
                target=_target(data["target"]),
                network_typing=_typed(data["network_typing"], str),
                precision=Precision(data["precision"]),
                profile=_profile(data["profile"]),
                input_name=_typed(data["input_name"], str),
                output_name=_typed(data["output_name"], str),
                workspace_gb=None if data["workspace_gb"] is None else float(data["workspace_gb"]),
                model=config_from_dict(data["model"], f"{source} model"),
                onnx=FileRecord(**_typed(data["onnx"], dict)),
                built_onnx=FileRecord(**_typed(data["built_onnx"], dict)),
                plugin=None if data["plugin"] is None else PluginRecord(**_typed(data["plugin"], dict)),
                plugin_layers=tuple(_typed(name, str) for name in _typed(data["plugin_layers"], list)),
                built_at=_typed(data["built_at"], str),
                build_seconds=float(_typed(data["build_seconds"], (int, float))),
                attention=_typed(data["attention"], str),
                attention_blocks=tuple(
                    AttentionBlock(**_typed(b, dict)) for b in _typed(data["attention_blocks"], list)
                ),
                fused_attention_blocks=_typed(data["fused_attention_blocks"], int),
                fp16=None if data["fp16"] is None else _typed(data["fp16"], dict),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: malformed sidecar ({type(exc).__name__}: {exc})") from None

    def write(self, engine: Path) -> Path:
        path = sidecar_path(engine)
        atomic_write_json(path, self.to_json())
        return path

    @classmethod
    def read(cls, engine: Path) -> EngineSidecar:
        """The sidecar of `engine`; ValueError (one line) if it is missing or malformed."""
        path = sidecar_path(engine)
        try:
            content = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(
                f"no sidecar {path} next to the engine: build engines with `python export/build_engine.py`"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"sidecar {path} is not readable JSON: {exc}") from None
        return cls.from_json(content, str(path))

    def compatibility_problems(self, *, runtime: Flavour, runtime_version: str, plugin_sha256: str | None) -> list[str]:
        """Why this engine cannot run with the loaded runtime and plugin; empty when it can."""
        problems: list[str] = []
        if (self.runtime, self.runtime_version) != (runtime, runtime_version):
            problems.append(
                f"built with {self.runtime.value} {self.runtime_version}, {runtime.value} {runtime_version} is loaded"
            )
        if self.plugin is not None:
            if self.plugin.version != plugin_contract.PLUGIN_VERSION:
                problems.append(
                    f"built for plugin version {self.plugin.version}, this code has {plugin_contract.PLUGIN_VERSION}"
                )
            if plugin_sha256 is None:
                problems.append(f"built with the plugin {self.plugin.path}, no plugin library is loaded")
            elif self.plugin.sha256 != plugin_sha256:
                problems.append(
                    f"built with plugin sha256 {self.plugin.sha256[:12]}, the loaded library has {plugin_sha256[:12]}"
                )
        return problems


def _typed(value: Any, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise TypeError(f"expected {kind}, found {value!r}")
    return value


def _blocks(data: Any) -> tuple[AttentionBlock, ...]:
    return tuple(AttentionBlock(**_typed(block, dict)) for block in _typed(data, list))


def _profile(data: Any) -> ShapeProfile:
    shapes = _typed(data, dict)
    return ShapeProfile(*(parse_shape(_typed(shapes[role], str)) for role in ("min", "opt", "max")))


def _target(data: Any) -> BuildTarget:
    target = _typed(data, dict)
    gpu = target["gpu"]
    info = None
    if gpu is not None:
        major, minor = (int(v) for v in _typed(gpu["compute_capability"], str).split("."))
        info = GpuInfo(name=_typed(gpu["name"], str), compute_capability=(major, minor))
    capabilities = tuple(_typed(cc, str) for cc in _typed(target["compute_capabilities"], list))
    return BuildTarget(gpu=info, compute_capabilities=capabilities)
