"""Which TensorRT builds and runs the engine, and what each flavour supports; the GPU where one is needed.

Two runtime flavours, each one Python module:

| flavour        | module                  | versions    | typing                       | builds without a GPU |
|----------------|-------------------------|-------------|------------------------------|----------------------|
| `tensorrt`     | `tensorrt`              | 10.8+, 11.x | weak on 10.x, strong on 11.x | no                   |
| `tensorrt-rtx` | `tensorrt_rtx_bindings` | 1.7+        | strong only                  | yes, for chosen CCs  |

`TrtRuntime` answers every "can this flavour do X?" question, so that no other module probes versions
with `getattr`. Each check raises `MissingDependencyError` with one line saying what is missing and
how to get it; the command lines print that line and exit 2.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from enum import Enum
from types import ModuleType
from typing import Literal

RuntimeChoice = Literal["auto", "tensorrt", "tensorrt-rtx"]
RUNTIME_CHOICES: tuple[RuntimeChoice, ...] = ("auto", "tensorrt", "tensorrt-rtx")


class MissingDependencyError(RuntimeError):
    """TensorRT, a GPU or a file the build needs is not there; the message is one line for the user."""


class Flavour(str, Enum):
    TENSORRT = "tensorrt"
    TENSORRT_RTX = "tensorrt-rtx"


@dataclass(frozen=True)
class _FlavourFacts:
    module: str
    label: str
    majors: tuple[int, ...]
    install: str
    trtexec: str


_FACTS = {
    Flavour.TENSORRT: _FlavourFacts(
        module="tensorrt",
        label="TensorRT",
        majors=(10, 11),
        install="install it with `pip install 'tensorrt>=10.8,<12'` or this project's extra "
        "`pip install -e .[tensorrt]`",
        trtexec="trtexec",
    ),
    Flavour.TENSORRT_RTX: _FlavourFacts(
        module="tensorrt_rtx_bindings",
        label="TensorRT for RTX",
        majors=(1,),
        install="install it with this project's extra `pip install -e .[tensorrt-rtx]`",
        trtexec="tensorrt_rtx",
    ),
}


@dataclass(frozen=True, order=True)
class TrtVersion:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> TrtVersion:
        """'10.13.0.35' -> TrtVersion(10, 13, 0); also '11.0.0', '10.8.0.43.post1', '1.7.1.116'."""
        match = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", text)
        if match is None:
            raise ValueError(f"expected a TensorRT version like 10.13.0.35, found {text!r}")
        return cls(int(match[1]), int(match[2]), int(match[3] or 0))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


# TensorRT for RTX builds ahead of time for these (IBuilderConfig.set_compute_capability); it has no SM90.
RTX_COMPUTE_CAPABILITIES = ("7.5", "8.0", "8.6", "8.9", "12.0", "12.1")
# Without a local GPU: the RTX generations a consumer deployment meets (Ampere, Ada, Blackwell).
RTX_DEFAULT_TARGETS = ("8.6", "8.9", "12.0")


@dataclass(frozen=True)
class TrtRuntime:
    """One installed TensorRT flavour and version, and what it supports."""

    flavour: Flavour
    version: TrtVersion
    version_text: str

    @property
    def label(self) -> str:
        return f"{_FACTS[self.flavour].label} {self.version_text}"

    @property
    def tag(self) -> str:
        """'trt10.13.0.35' or 'rtx1.7.1.116': the flavour and version in engine file names."""
        return ("rtx" if self.flavour is Flavour.TENSORRT_RTX else "trt") + self.version_text

    @property
    def module_name(self) -> str:
        return _FACTS[self.flavour].module

    def module(self) -> ModuleType:
        """The Python module of this flavour (already imported by `require_runtime`)."""
        return importlib.import_module(self.module_name)

    def prepare_process(self) -> None:
        """What this flavour needs in the process before parsing or deserializing (idempotent)."""
        if self.flavour is Flavour.TENSORRT_RTX:
            from esc_deploy.export.trt.rtx_library import ensure_unversioned_library

            ensure_unversioned_library(self.version_text)

    @property
    def strongly_typed_only(self) -> bool:
        """TensorRT 11 and TensorRT for RTX have no weak typing (BuilderFlag.FP16, precision constraints)."""
        return self.flavour is Flavour.TENSORRT_RTX or self.version.major >= 11

    @property
    def has_plugin_override_flag(self) -> bool:
        """OnnxParserFlag.ENABLE_PLUGIN_OVERRIDE: TensorRT 10.15+, 11.x, TensorRT for RTX."""
        return self.flavour is Flavour.TENSORRT_RTX or self.version >= TrtVersion(10, 15, 0)

    @property
    def builds_ahead_of_time(self) -> bool:
        """Builds on a machine without a GPU, for compute capabilities chosen at build time."""
        return self.flavour is Flavour.TENSORRT_RTX

    @property
    def target_compute_capabilities(self) -> tuple[str, ...]:
        """What `--compute-capability` may name (empty: the build is for the local GPU only)."""
        return RTX_COMPUTE_CAPABILITIES if self.builds_ahead_of_time else ()

    @property
    def plugin_abi_major(self) -> int:
        """The TensorRT header major a plugin library must be built with to load into this runtime."""
        return 11 if self.flavour is Flavour.TENSORRT_RTX else self.version.major

    @property
    def trtexec(self) -> str:
        return _FACTS[self.flavour].trtexec


def _probe(flavour: Flavour) -> TrtRuntime:
    """The flavour's runtime, or MissingDependencyError saying why it is not usable."""
    facts = _FACTS[flavour]
    try:
        module = importlib.import_module(facts.module)
    except ImportError as exc:
        raise MissingDependencyError(f"{facts.label} is not installed ({exc}); {facts.install}") from None
    text = getattr(module, "__version__", None)
    # With only tensorrt-stubs installed, `import tensorrt` finds an empty namespace package.
    if not isinstance(text, str) or not hasattr(module, "Builder"):
        where = ", ".join(getattr(module, "__path__", [])) or "?"
        raise MissingDependencyError(
            f"{facts.label} is not installed (`import {facts.module}` found only type stubs or an empty package "
            f"at {where}); {facts.install}"
        )
    return TrtRuntime(flavour, check_version(flavour, text), text)


def check_version(flavour: Flavour, text: str) -> TrtVersion:
    """The version a flavour's module reports, if this project supports it; MissingDependencyError otherwise."""
    facts = _FACTS[flavour]
    try:
        version = TrtVersion.parse(text)
    except ValueError as exc:
        raise MissingDependencyError(f"{facts.label} reports an unreadable version: {exc}; {facts.install}") from None
    if version.major not in facts.majors:
        supported = " or ".join(f"{m}.x" for m in facts.majors)
        raise MissingDependencyError(
            f"{facts.label} {text} is not supported (this project needs {supported}); {facts.install}"
        )
    return version


def require_runtime(choice: RuntimeChoice = "auto") -> TrtRuntime:
    """The runtime to use: the named flavour, or with 'auto' TensorRT if installed, else TensorRT for RTX."""
    if choice != "auto":
        return _probe(Flavour(choice))
    reasons: list[str] = []
    for flavour in (Flavour.TENSORRT, Flavour.TENSORRT_RTX):
        try:
            return _probe(flavour)
        except MissingDependencyError as exc:
            reasons.append(str(exc))
    raise MissingDependencyError("no TensorRT runtime is usable: " + "; ".join(reasons))


def installed_runtime(choice: RuntimeChoice = "auto") -> TrtRuntime | None:
    try:
        return require_runtime(choice)
    except MissingDependencyError:
        return None


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: tuple[int, int]

    @property
    def compute_capability_text(self) -> str:
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"


def local_gpu(device: int = 0) -> GpuInfo | None:
    """The CUDA device torch sees, or None (no GPU, or a CPU build of torch)."""
    import torch

    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(device)
    return GpuInfo(name=torch.cuda.get_device_name(device), compute_capability=(major, minor))


def require_cuda_gpu(device: int = 0) -> GpuInfo:
    """The CUDA device TensorRT will build for or run on, or MissingDependencyError."""
    gpu = local_gpu(device)
    if gpu is None:
        raise MissingDependencyError(
            "no CUDA GPU is visible (torch.cuda.is_available() is False): TensorRT engines run on an NVIDIA GPU, "
            "and TensorRT (not TensorRT for RTX) also builds on one; install the NVIDIA driver and a CUDA build "
            "of torch (https://pytorch.org/get-started/)"
        )
    return gpu


def cannot_run_engines(choice: RuntimeChoice = "auto") -> str | None:
    """Why engines cannot run on this machine (no usable runtime, no GPU), or None when they can."""
    try:
        require_runtime(choice)
        require_cuda_gpu()
    except MissingDependencyError as exc:
        return str(exc)
    return None
