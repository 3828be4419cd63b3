"""A real Triton Inference Server (PyTriton's tritonserver, Python backend) serving an exported ESC model.

The fixtures install nothing: `find_pytriton` looks for the wheel the README's test command installs
(`build/pytriton`). Without it the server tests skip with that command as the reason; under CI
(`CI=true`, set by .ci/run) they fail instead, so that a missing install step cannot pass unnoticed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from esc_deploy.serving.local_server import (
    LocalTriton,
    PytritonInstall,
    TritonServerError,
    find_pytriton,
    group_alive,
)
from esc_deploy.serving.model_repository.writer import RepoSpec, make_repository, spec_from_files
from tests.export.trt.sidecars import build_engine_for, write_stand_in_onnx

# The built-in default model (ESC-light x4, seeded random weights with the official initialisation).
SERVED_CHECKPOINT = "default"
MAX_TILE = 48  # the served model's largest input: a 64x96 photograph needs 6 tiles
MAX_BATCH = 4
QUEUE_DELAY_US = 50_000  # long enough for four concurrent requests to meet in one batch
IMAGE_OVERLAP = 16  # the image models' tile overlap: tile 48, stride 32 = the window
IMAGE_MAX_PIXELS = 128 * 96  # small, so that a test can go above it cheaply


@pytest.fixture(scope="session")
def pytriton() -> PytritonInstall:
    try:
        return find_pytriton()
    except TritonServerError as exc:
        if os.environ.get("CI") == "true":  # as tests/conftest.py's skip_or_fail
            pytest.fail(f"CI installs nvidia-pytriton for the real-server tests, yet: {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def served_onnx(exports, tmp_path_factory: pytest.TempPathFactory) -> Path:  # exports: tests/conftest.py
    path = tmp_path_factory.mktemp("served") / "esc-light_x4.onnx"
    path.write_bytes(exports.proto(SERVED_CHECKPOINT).SerializeToString())
    return path


@dataclass(frozen=True)
class Served:
    server: LocalTriton
    spec: RepoSpec
    onnx: Path

    @property
    def model(self) -> str:
        return self.spec.model_name("python")

    @property
    def image_model(self) -> str:
        return self.spec.image_models[0]  # pixels in and out

    @property
    def bytes_model(self) -> str:
        return self.spec.image_models[1]  # a file's bytes in, PNG bytes out

    def url(self, protocol: str) -> str:
        return self.server.http_url if protocol == "http" else self.server.grpc_url


@pytest.fixture(scope="session")
def served(pytriton: PytritonInstall, served_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`make_triton_repo --onnx --engine` (all three variants, the image models) and a server with the
    Python model and the image models loaded."""
    # The plan variant: a real TensorRT for RTX engine of a stand-in network with the same esc.config (the
    # served export has the plugin node; the server cannot run TensorRT engines anyway, only parse the config).
    folder = tmp_path_factory.mktemp("engine")
    engine = build_engine_for(write_stand_in_onnx(folder / "stand_in.onnx"), folder)
    spec = spec_from_files(
        onnx=served_onnx,
        engine=engine,
        ort_max_input=(MAX_TILE, MAX_TILE),
        ort_max_batch=MAX_BATCH,
        queue_delay_us=QUEUE_DELAY_US,
        image_target="python",  # the only backend of PyTriton's server
        image_overlap=IMAGE_OVERLAP,
        image_max_pixels=IMAGE_MAX_PIXELS,
    )
    repo = make_repository(spec, tmp_path_factory.mktemp("repo") / "triton_repo").repo
    server = LocalTriton(repo, models=[spec.model_name("python"), *spec.image_models], install=pytriton)
    server.start()
    pid, prefix = server.pid, server.shm_prefix
    assert pid is not None
    try:
        yield Served(server=server, spec=spec, onnx=served_onnx)
    finally:
        report = server.stop()
    # Stopped by SIGTERM alone. Its regions: gone after stop(), which removes any a stub left behind (under
    # heavy load the 2.51 Python backend has left one region of a BLS model's stub, once, of many runs).
    assert not report.killed, f"tritonserver {pid} needed SIGKILL to stop"
    assert not group_alive(pid) and not list(Path("/dev/shm").glob(f"{prefix}*"))
