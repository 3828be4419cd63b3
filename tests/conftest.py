"""Shared fixtures and the skip rules for hardware-bound markers (cuda, nvcc, tensorrt, tensorrt_rtx, ...)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch

# A shell starts background jobs (`pytest ... &`) with Ctrl-C ignored, and a child inherits that: the tests that
# press Ctrl-C on a command (exit 130, no partial file) would then see it ignored. Restore Python's own handler.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Ray reads this at import: a local instance that tests start stays on loopback (serving/ray_job.py local_ray).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

# The real Triton server fixtures, shared by tests/serving and the serving benchmark's tests.
pytest_plugins = ["tests.serving.fixtures"]

DATA_DIR = Path(__file__).parent / "data"
GOLDEN_DIR = DATA_DIR / "golden"
GOLDEN_NAMES = ("tiny_x2", "tiny_x2_b2", "light_x4", "fp_x4", "real_x4")


# Markers whose component CI installs: there a missing one fails the test instead of skipping it.
REQUIRED_IN_CI = ("nvcc", "tensorrt_rtx", "tensorrt_lean", "trt_headers")


def _skip_reasons() -> dict[str, str | None]:
    from esc_deploy.export.trt.env import cannot_run_engines, installed_runtime

    cuda = torch.cuda.is_available()
    rtx = installed_runtime("tensorrt-rtx")
    return {
        "cuda": None if cuda else "needs a CUDA device; none is available here",
        "nvcc": None if shutil.which("nvcc") else "needs the CUDA compiler nvcc on PATH",
        "tensorrt": cannot_run_engines(),
        "tensorrt_rtx": None if rtx else "needs TensorRT for RTX: pip install -e .[tensorrt-rtx]",
        "tensorrt_lean": None
        if _has_module("tensorrt_lean_bindings")
        else "needs the TensorRT 11 lean runtime "
        "(tensorrt_lean_cu13_libs, tensorrt_lean_cu13_bindings; in the dev extra)",
    }


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def skip_or_fail(reason: str, marker: str) -> None:
    """Skip with the reason; under CI (CI=true), where `marker`'s component is installed, fail instead."""
    if os.environ.get("CI") == "true" and marker in REQUIRED_IN_CI:
        pytest.fail(f"CI installs this test's component, yet: {reason}", pytrace=False)
    pytest.skip(reason)


if os.environ.get("PYTEST_XDIST_WORKER"):  # one worker per core (pytest -n 2 on the 2-core CI machine)
    from esc_deploy.export.onnx_graph.ort_session import set_default_threads

    torch.set_num_threads(1)
    set_default_threads(1)


@pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the xdist_group marks to schedule the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reasons = _skip_reasons()
    for item in items:
        # Tests that export a golden checkpoint run on one xdist worker (--dist loadgroup), so that
        # the session-wide ExportCache exports each checkpoint once.
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("name") if callspec else None
        if "exports" in getattr(item, "fixturenames", ()) and name in GOLDEN_NAMES:
            item.add_marker(pytest.mark.xdist_group(name))
        # The kernel's tests wait for one compilation (compile_kernel): on one worker, the other stays free.
        if "kernel_build" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("kernel"))
        for marker, reason in reasons.items():
            if reason and marker in item.keywords:
                item.user_properties.append(("unavailable", (marker, reason)))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture of the test is set up (a module fixture may export or build for minutes)."""
    for key, value in item.user_properties:
        if key == "unavailable":
            marker, reason = value
            skip_or_fail(reason, marker)


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return GOLDEN_DIR


def load_golden(name: str) -> dict:
    """{'arch', 'kwargs', 'input', 'output'} computed by the official code (tests/data/golden/README.md)."""
    return torch.load(GOLDEN_DIR / f"{name}.io.pt", weights_only=True)


class ExportCache:
    """ONNX exports are the slow part of the suite (5-40 s each on 2 cores, minutes on a loaded machine): export
    each once per process. The exports are those of validation/backends.py's export_graphs (with the exporter's
    per-node metadata, for drift localisation), so that the parity command run by a test in the same process
    (tests/validation/accuracy) finds them exported; proto() hands out a copy without that metadata, as
    to_onnx_proto exports by default."""

    def __init__(self) -> None:
        self._protos: dict[tuple[str, str, int], object] = {}

    def model(self, name: str | Path):  # -> esc.ESCBase
        """A golden checkpoint by name, the seeded default model, or an official checkpoint a test wrote."""
        import esc

        if name == "default":
            from esc_deploy.common.defaults import default_model

            return default_model()
        path = name if isinstance(name, Path) else GOLDEN_DIR / f"{name}.pth"
        return esc.load_model(path, attention="naive")

    def proto(self, name: str | Path, attention: str = "plugin", opset: int = 18):  # -> onnx.ModelProto
        """The fp32 export of ``name`` (see model()): a test's checkpoint shares the export of the parity runs
        of its module on that checkpoint, when the module runs on one worker (an xdist_group)."""
        key = (str(name), attention, opset)
        if key not in self._protos:
            import onnx

            from esc_deploy.common.command import quiet_exporter_logs
            from esc_deploy.export.onnx_graph.exporter import DEFAULT_OPSET, _strip_metadata
            from esc_deploy.validation.backends import export_graphs

            quiet_exporter_logs()
            # The parity command exports at opset None (the exporter's default): the same cache entry.
            shared = export_graphs(self.model(name), [attention], opset=None if opset == DEFAULT_OPSET else opset)
            proto = onnx.ModelProto()
            proto.CopyFrom(shared[attention])
            _strip_metadata(proto)
            self._protos[key] = proto
        return self._protos[key]


@pytest.fixture(scope="session")
def exports() -> ExportCache:
    return ExportCache()


# ---------------------------------------------------------------------------------------------- the plugin

REPO = Path(__file__).resolve().parents[1]
PLUGIN_SOURCE = REPO / "engines" / "plugin"
PLUGIN_TEST_ARCH = "86"  # one architecture keeps the builds short; any GPU-free test is indifferent to it
# Where the TensorRT headers come from: the variables a user's CMake build reads (TensorRT_INCLUDE_DIR,
# TensorRT_ROOT), and for the wrong-major tests a second set of 10.x headers.
HEADER_VARIABLES = {11: ("TensorRT_INCLUDE_DIR", "TensorRT_ROOT"), 10: ("ESC_TENSORRT10_INCLUDE_DIR",)}


def header_dir(major: int) -> Path | None:
    """The include folder of TensorRT `major`.x headers named by the environment, or None."""
    for variable in HEADER_VARIABLES[major]:
        value = os.environ.get(variable)
        if not value:
            continue
        for folder in (Path(value), Path(value) / "include"):
            version = folder / "NvInferVersion.h"
            if version.is_file() and f"TRT_MAJOR_ENTERPRISE {major}" in version.read_text():
                return folder
    return None


def build_plugin(major: int, *, sanitize: bool = False, runtimes: tuple[Path, ...] = ()) -> Path:
    """engines/plugin built with TensorRT `major`.x headers into build/test-plugin-*, once per session
    across xdist workers (a file lock); incremental, so a source change is rebuilt. Returns the build folder."""
    from filelock import FileLock

    headers = header_dir(major)
    if headers is None:
        names = " or ".join(HEADER_VARIABLES[major])
        skip_or_fail(f"needs TensorRT {major}.x headers: set {names} to their include folder", "trt_headers")
    if shutil.which("nvcc") is None or shutil.which("cmake") is None:
        skip_or_fail("needs nvcc and cmake to build the plugin", "nvcc")
    build = REPO / "build" / f"test-plugin-trt{major}{'-sanitized' if sanitize else ''}"
    build.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(build) + ".lock"):
        configure = [
            "cmake", "-S", str(PLUGIN_SOURCE), "-B", str(build), f"-DTensorRT_INCLUDE_DIR={headers}",
            f"-DCMAKE_CUDA_ARCHITECTURES={PLUGIN_TEST_ARCH}", "-DESC_REQUIRE_TENSORRT=ON",
            "-DCMAKE_CXX_FLAGS=-Werror", f"-DESC_SANITIZE={'ON' if sanitize else 'OFF'}",
            f"-DCMAKE_BUILD_TYPE={'Debug' if sanitize else 'Release'}",
            "-DESC_TEST_RUNTIME_LIBRARIES=" + ";".join(str(r) for r in runtimes),
        ]  # fmt: skip
        for command in (configure, ["cmake", "--build", str(build), "-j", "2"]):
            result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
            assert result.returncode == 0, (
                f"{' '.join(command)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
    return build


@pytest.fixture(scope="session")
def trt11_plugin() -> Path:
    """libesc_trt_plugin.so built with TensorRT 11.x headers: what TensorRT 11 and TensorRT for RTX load."""
    return build_plugin(11) / "libesc_trt_plugin.so"


@pytest.fixture(scope="session")
def trt10_plugin() -> Path:
    """The same library built with TensorRT 10.x headers: the wrong major for TensorRT 11 and RTX."""
    return build_plugin(10) / "libesc_trt_plugin.so"


# ---------------------------------------------------------------------------------------------- the kernel

KERNEL_ARCHS = ("80", "86", "89", "90")  # the CMake default: SASS for each


class KernelBuild:
    """escWindowAttentionKernel.cu compiled by nvcc for KERNEL_ARCHS in one call (warnings are errors): the
    object, ptxas -v's report, and each architecture's cubin (kept by nvcc --keep) for the SASS tools."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.object = folder / "escWindowAttentionKernel.o"
        self.ptxas = (folder / "ptxas.txt").read_text()

    def cubin(self, arch: str) -> Path:
        return self.folder / f"escWindowAttentionKernel.compute_{arch}.cubin"


def compile_kernel() -> KernelBuild:
    """The kernel compiled once: into build/test-kernel/<key>, keyed on the kernel sources, nvcc's version and the
    command, so that every test session and xdist worker uses one compilation until a source changes."""
    import hashlib

    from filelock import FileLock

    from esc.kernel_files import KERNEL_SOURCES, kernel_source_dir

    if shutil.which("nvcc") is None:
        skip_or_fail("needs the CUDA compiler nvcc on PATH", "nvcc")
    sources = kernel_source_dir()
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in KERNEL_ARCHS]
    flags = ["-std=c++17", "-O3", "-c", "-Werror", "all-warnings", "-Xptxas", "-v", *gencode]
    version = subprocess.run(["nvcc", "--version"], capture_output=True, text=True, check=True).stdout
    key = hashlib.sha256("\0".join([version, *flags]).encode())
    for name in KERNEL_SOURCES:
        key.update(name.encode() + b"\0" + (sources / name).read_bytes())
    folder = REPO / "build" / "test-kernel" / key.hexdigest()[:16]
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not (folder / "ptxas.txt").is_file():  # written last: a folder without it is an interrupted build
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            command = ["nvcc", *flags, "--keep", "--keep-dir", str(folder), str(sources / KERNEL_SOURCES[0]),
                       "-o", str(folder / "escWindowAttentionKernel.o")]  # fmt: skip
            result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800)
            report = result.stdout + result.stderr
            assert result.returncode == 0, f"{' '.join(command)} failed:\n{report[-6000:]}"
            for path in folder.iterdir():  # nvcc --keep's other intermediates (.ii, .ptx, .fatbin...) are not used
                if path.suffix not in (".cubin", ".o"):
                    path.unlink()
            (folder / "ptxas.txt").write_text(report)
            for stale in folder.parent.iterdir():  # compilations of earlier sources: never read again
                if stale.is_dir() and stale != folder:
                    shutil.rmtree(stale, ignore_errors=True)
    return KernelBuild(folder)


@pytest.fixture(scope="session")
def kernel_build() -> KernelBuild:
    return compile_kernel()
