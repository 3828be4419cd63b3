"""What an engine build or run needs from the machine: TensorRT 10.x/11.x and a CUDA GPU.

Each check raises `MissingDependencyError` with one line saying what is missing and how to get it;
the command lines print that line and exit 2. Callers import tensorrt themselves, after
`require_tensorrt()`, so that mypy checks their calls against the TensorRT stubs.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass

INSTALL_TENSORRT = "install it with `pip install tensorrt` or this project's extra: `pip install -e .[tensorrt]`"
SUPPORTED_MAJORS = (10, 11)


class MissingDependencyError(RuntimeError):
    """TensorRT, a GPU or a file the build needs is not there; the message is one line for the user."""


@dataclass(frozen=True, order=True)
class TrtVersion:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> TrtVersion:
        """'10.13.0.35' -> TrtVersion(10, 13, 0); also '11.0.0', '10.8.0.43.post1'."""
        match = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", text)
        if match is None:
            raise ValueError(f"expected a TensorRT version like 10.13.0.35, found {text!r}")
        return cls(int(match[1]), int(match[2]), int(match[3] or 0))

    @property
    def is_strongly_typed_only(self) -> bool:
        """TensorRT 11 removed weak typing (BuilderFlag.FP16, precision constraints)."""
        return self.major >= 11

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def check_supported(version: TrtVersion, text: str) -> None:
    if version.major not in SUPPORTED_MAJORS:
        raise MissingDependencyError(
            f"TensorRT {text} is not supported (this project needs 10.x or 11.x); "
            "install one with `pip install 'tensorrt>=10.8,<12'`"
        )


def require_tensorrt() -> tuple[TrtVersion, str]:
    """(parsed version, full version text) of the installed TensorRT, or MissingDependencyError.

    `import tensorrt` alone is not proof: with only the type stubs (tensorrt-stubs) installed it
    imports an empty namespace package, so the check also needs `__version__` and `Builder`.
    """
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError as exc:
        raise MissingDependencyError(f"TensorRT is not installed ({exc}); {INSTALL_TENSORRT}") from None
    text = getattr(trt, "__version__", None)
    if not isinstance(text, str) or not hasattr(trt, "Builder"):
        where = ", ".join(getattr(trt, "__path__", [])) or "?"
        raise MissingDependencyError(
            f"TensorRT is not installed (`import tensorrt` found only type stubs or an empty package "
            f"at {where}); "
            f"{INSTALL_TENSORRT}"
        )
    try:
        version = TrtVersion.parse(text)
    except ValueError as exc:
        raise MissingDependencyError(f"TensorRT reports an unreadable version: {exc}") from None
    check_supported(version, text)
    return version, text


def installed_tensorrt() -> tuple[TrtVersion, str] | None:
    try:
        return require_tensorrt()
    except MissingDependencyError:
        return None


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: tuple[int, int]

    @property
    def compute_capability_text(self) -> str:
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"


def require_cuda_gpu(device: int = 0) -> GpuInfo:
    """The CUDA device TensorRT will build for, or MissingDependencyError."""
    import torch

    if not torch.cuda.is_available():
        raise MissingDependencyError(
            "no CUDA GPU is visible (torch.cuda.is_available() is False): "
            "TensorRT engines are built and run on "
            "an NVIDIA GPU; install the NVIDIA driver and a CUDA build of torch (https://pytorch.org/get-started/)"
        )
    major, minor = torch.cuda.get_device_capability(device)
    return GpuInfo(name=torch.cuda.get_device_name(device), compute_capability=(major, minor))
