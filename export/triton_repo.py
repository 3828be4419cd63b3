"""A Triton model repository for an ESC TensorRT engine (and an ONNX Runtime CPU variant).

Layout written by :func:`make_repository` (``DIR`` is the model repository itself)::

    DIR/<name>/config.pbtxt            platform tensorrt_plan, KIND_GPU
    DIR/<name>/1/model.plan            the engine, copied
    DIR/<name>_onnx/config.pbtxt       platform onnxruntime_onnx, KIND_CPU   (with an ONNX file)
    DIR/<name>_onnx/1/model.onnx
    DIR/launch_triton.sh               the exact tritonserver command (plugin via --backend-config)
    DIR/docker_triton.sh               the same inside the Triton container

Triton only treats sub-folders as models, so the two scripts at the top level are ignored by it.
The batch layout follows the engine's optimization profile (its JSON sidecar): with a minimum batch
of 1, ``max_batch_size`` is the profile's maximum batch and dims are ``[3, -1, -1]``; otherwise Triton
must not batch (``max_batch_size: 0``) and the batch dimension is part of dims. The profile's
spatial limits and the model's scale/window go into ``parameters`` so that clients can tile.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INPUT_NAME = "input"
OUTPUT_NAME = "output"
CHANNELS = 3
DEFAULT_TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:25.01-py3"
CONTAINER_REPO = "/models"
CONTAINER_PLUGINS = "/plugins"
# Parameter keys in config.pbtxt that validation/triton_io.py reads back.
PARAM_MAX_HW = "esc_max_input_hw"
PARAM_MIN_HW = "esc_min_input_hw"
PARAM_SCALE = "esc_scale"
PARAM_WINDOW = "esc_window_size"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Profile:
    """One optimization profile of the engine's input, each shape [batch, channels, height, width]."""

    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]

    @classmethod
    def from_dict(cls, data: Any, source: str) -> Profile:
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected 'profile' to be an object with min/opt/max, found {data!r}")
        shapes = []
        for key in ("min", "opt", "max"):
            shape = data.get(key)
            if isinstance(shape, str):  # export/build_engine.py writes '1x3x64x64'
                shape = _parse_shape(shape, f"{source}: profile.{key}")
            if not (isinstance(shape, list) and len(shape) == 4 and all(isinstance(v, int) for v in shape)):
                raise ValueError(f"{source}: expected profile.{key} = [b, c, h, w] integers, found {shape!r}")
            if shape[1] != CHANNELS or min(shape) < 1:
                raise ValueError(f"{source}: expected profile.{key} = [b>=1, 3, h>=1, w>=1], found {shape}")
            shapes.append((shape[0], shape[1], shape[2], shape[3]))
        lo, opt, hi = shapes
        if not all(a <= b <= c for a, b, c in zip(lo, opt, hi, strict=True)):
            raise ValueError(f"{source}: expected profile min <= opt <= max, found {lo}, {opt}, {hi}")
        return cls(min=lo, opt=opt, max=hi)


@dataclass(frozen=True)
class RepoSpec:
    """Everything that decides the repository's contents."""

    name: str
    engine: Path
    plugin: Path | None = None
    onnx: Path | None = None
    profile: Profile | None = None
    max_batch: int | None = None  # only without a profile, or to lower the profile's maximum
    instances: int = 1
    queue_delay_us: int = 100
    scale: int | None = None
    window_size: int | None = None
    engine_info: tuple[tuple[str, str], ...] = ()  # precision, TensorRT version, GPU, from the sidecar
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    triton_image: str = DEFAULT_TRITON_IMAGE

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"model name must match {_NAME_RE.pattern}, got {self.name!r}")
        if self.instances < 1:
            raise ValueError(f"instances must be >= 1, got {self.instances}")
        if self.queue_delay_us < 0:
            raise ValueError(f"queue delay must be >= 0 microseconds, got {self.queue_delay_us}")
        if self.profile is None and self.max_batch is None:
            raise ValueError(f"{self.engine}: no engine sidecar with a profile; pass --max-batch")
        if self.max_batch is not None and self.max_batch < 1:
            raise ValueError(f"max batch must be >= 1, got {self.max_batch}")
        for label, value in (("scale", self.scale), ("window size", self.window_size)):
            if value is not None and value < 1:
                raise ValueError(f"{label} must be >= 1, got {value}")
        self.batch_layout()  # validates max_batch against the profile

    def batch_layout(self) -> tuple[int, list[int]]:
        """(max_batch_size, dims) of the input and output in config.pbtxt."""
        if self.profile is None:
            assert self.max_batch is not None  # checked in __post_init__
            return self.max_batch, [CHANNELS, -1, -1]
        lo, hi = self.profile.min[0], self.profile.max[0]
        if lo == 1:
            if self.max_batch is not None and self.max_batch > hi:
                raise ValueError(f"--max-batch {self.max_batch} exceeds the engine profile's maximum batch {hi}")
            return (self.max_batch or hi), [CHANNELS, -1, -1]
        if self.max_batch is not None:
            raise ValueError(
                f"the engine profile's minimum batch is {lo}, not 1: Triton cannot batch it, drop --max-batch"
            )
        return 0, [lo if lo == hi else -1, CHANNELS, -1, -1]

    def parameters(self) -> dict[str, str]:
        params: dict[str, str] = {}
        if self.profile is not None:
            params[PARAM_MIN_HW] = f"{self.profile.min[2]},{self.profile.min[3]}"
            params[PARAM_MAX_HW] = f"{self.profile.max[2]},{self.profile.max[3]}"
        if self.scale is not None:
            params[PARAM_SCALE] = str(self.scale)
        if self.window_size is not None:
            params[PARAM_WINDOW] = str(self.window_size)
        for key, value in self.engine_info:
            params[f"engine_{key}"] = value
        return params

    @property
    def onnx_name(self) -> str:
        return f"{self.name}_onnx"


def _parse_shape(text: str, where: str) -> list[int]:
    from export.shape_profile import parse_shape

    try:
        return list(parse_shape(text))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def read_sidecar(engine: Path) -> dict[str, Any] | None:
    """The engine's JSON sidecar (``<engine>.json``, else the engine path with ``.json`` as suffix)."""
    for path in (engine.with_name(engine.name + ".json"), engine.with_suffix(".json")):
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ValueError(f"{path}: not a readable JSON sidecar ({exc})") from None
            if not isinstance(data, dict):
                raise ValueError(f"{path}: expected a JSON object, found {type(data).__name__}")
            data["_path"] = str(path)
            return data
    return None


def spec_from_engine(
    engine: Path,
    *,
    name: str | None = None,
    plugin: Path | None = None,
    onnx: Path | None = None,
    max_batch: int | None = None,
    **options: Any,
) -> RepoSpec:
    """A :class:`RepoSpec` with the profile, scale and engine details read from the sidecar."""
    if not engine.is_file() or engine.stat().st_size == 0:
        raise ValueError(f"engine {engine} does not exist or is empty")
    for label, path in (("plugin", plugin), ("ONNX model", onnx)):
        if path is not None and not path.is_file():
            raise ValueError(f"{label} {path} does not exist")
    sidecar = read_sidecar(engine)
    if sidecar is None and max_batch is None:
        raise ValueError(
            f"no sidecar {engine.name}.json next to {engine}: the engine's profile is unknown; pass --max-batch N"
        )
    profile = Profile.from_dict(sidecar.get("profile"), sidecar["_path"]) if sidecar else None
    info = _engine_info(sidecar) if sidecar else ()
    for key in ("input_name", "output_name"):
        if sidecar and isinstance(sidecar.get(key), str):
            options.setdefault(key, sidecar[key])
    for key in ("scale", "window_size"):
        if options.get(key) is None and sidecar and isinstance(sidecar.get(key), int):
            options[key] = sidecar[key]
    if onnx is not None:
        check_onnx(onnx, options.get("input_name", INPUT_NAME), options.get("output_name", OUTPUT_NAME))
    return RepoSpec(
        name=name or engine.stem,
        engine=engine,
        plugin=plugin,
        onnx=onnx,
        profile=profile,
        max_batch=max_batch,
        engine_info=info,
        **options,
    )


def _engine_info(sidecar: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """precision, tensorrt_version and gpu_name (``gpu.name`` in export/build_engine.py's sidecar)."""
    gpu = sidecar.get("gpu")
    values = {
        "precision": sidecar.get("precision"),
        "tensorrt_version": sidecar.get("tensorrt_version"),
        "gpu_name": gpu.get("name") if isinstance(gpu, dict) else sidecar.get("gpu_name"),
    }
    return tuple((key, str(value)) for key, value in values.items() if value is not None)


def check_onnx(path: Path, input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME) -> None:
    """The ONNX file must have one input and one output with the engine's names, both rank 4."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises several unrelated types for a corrupt file
        raise ValueError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    graph = model.graph
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in graph.initializer):
        raise ValueError(f"{path}: weights stored as external data are not supported; export one file")
    initializers = {init.name for init in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    for kind, values, expected in (("input", inputs, input_name), ("output", graph.output, output_name)):
        names = [v.name for v in values]
        if names != [expected]:
            raise ValueError(f"{path}: expected one {kind} named {expected!r}, found {names}")
        rank = len(values[0].type.tensor_type.shape.dim)
        if rank != 4:
            raise ValueError(f"{path}: expected {kind} {expected!r} of rank 4 [B, 3, H, W], found rank {rank}")


def _tensor(name: str, dims: list[int]) -> str:
    shape = ", ".join(map(str, dims))
    return f'  {{\n    name: "{name}"\n    data_type: TYPE_FP32\n    dims: [ {shape} ]\n  }}'


def model_config(spec: RepoSpec, *, onnx: bool) -> str:
    """config.pbtxt text (protobuf text format of Triton's ModelConfig)."""
    max_batch, dims = spec.batch_layout()
    kind, count = ("KIND_CPU", 1) if onnx else ("KIND_GPU", spec.instances)
    lines = [
        f'name: "{spec.onnx_name if onnx else spec.name}"',
        f'platform: "{"onnxruntime_onnx" if onnx else "tensorrt_plan"}"',
        f"max_batch_size: {max_batch}",
        f"input [\n{_tensor(spec.input_name, dims)}\n]",
        f"output [\n{_tensor(spec.output_name, dims)}\n]",
        f"instance_group [\n  {{\n    kind: {kind}\n    count: {count}\n  }}\n]",
    ]
    if max_batch > 1:
        lines.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {spec.queue_delay_us}\n}}")
    for key, value in spec.parameters().items():
        lines.append(f'parameters {{\n  key: "{key}"\n  value {{ string_value: {json.dumps(value)} }}\n}}')
    return "\n".join(lines) + "\n"


def launch_command(repo: Path, plugin: Path | None) -> list[str]:
    """``tritonserver`` on this machine, serving ``repo`` with the plugin loaded by the TensorRT backend."""
    cmd = ["tritonserver", f"--model-repository={repo.resolve()}"]
    if plugin is not None:
        cmd.append(f"--backend-config=tensorrt,plugins={plugin.resolve()}")
    return cmd


def docker_command(repo: Path, plugin: Path | None, image: str) -> list[str]:
    """The same server in NVIDIA's container: repository at /models, plugin folder at /plugins."""
    cmd = ["docker", "run", "--rm", "--gpus", "all", "-p", "8000:8000", "-p", "8001:8001", "-p", "8002:8002"]
    cmd += ["-v", f"{repo.resolve()}:{CONTAINER_REPO}:ro"]
    if plugin is not None:
        cmd += ["-v", f"{plugin.resolve().parent}:{CONTAINER_PLUGINS}:ro"]
    cmd += [image, "tritonserver", f"--model-repository={CONTAINER_REPO}"]
    if plugin is not None:
        cmd.append(f"--backend-config=tensorrt,plugins={CONTAINER_PLUGINS}/{plugin.name}")
    return cmd


def _script(cmd: list[str], spec: RepoSpec, where: str) -> str:
    info = dict(spec.engine_info)
    trt = info.get("tensorrt_version", "unknown (no sidecar)")
    gpu = info.get("gpu_name", "an unrecorded GPU")
    return (
        "#!/bin/sh\n"
        f"# Generated by export/make_triton_repo.py: serves {spec.name}"
        + (f" and {spec.onnx_name}" if spec.onnx else "")
        + f" {where}.\n"
        f"# The engine was built with TensorRT {trt} on {gpu}: the server\n"
        "# must run that TensorRT version on that GPU model (and the plugin must be built against it).\n"
        f'exec {shlex.join(cmd)} "$@"\n'
    )


@dataclass(frozen=True)
class RepoResult:
    repo: Path
    models: tuple[str, ...]
    launch: list[str]
    docker: list[str]


def make_repository(spec: RepoSpec, output: Path, *, overwrite: bool = False) -> RepoResult:
    """Write the repository into ``output``: built in a temporary folder beside it, then renamed,
    so that a failure leaves no partial repository (``overwrite`` replaces an existing one)."""
    output = output.resolve()
    if output.exists() and not overwrite:
        raise ValueError(f"{output} already exists; pass --overwrite to replace it")
    output.parent.mkdir(parents=True, exist_ok=True)
    launch = launch_command(output, spec.plugin)
    docker = docker_command(output, spec.plugin, spec.triton_image)
    models = [spec.name] + ([spec.onnx_name] if spec.onnx else [])
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        _write_model(tmp / spec.name, model_config(spec, onnx=False), spec.engine, "model.plan")
        if spec.onnx is not None:
            _write_model(tmp / spec.onnx_name, model_config(spec, onnx=True), spec.onnx, "model.onnx")
        for file, cmd, where in (
            ("launch_triton.sh", launch, "with tritonserver on this machine"),
            ("docker_triton.sh", docker, f"in {spec.triton_image}"),
        ):
            (tmp / file).write_text(_script(cmd, spec, where))
            (tmp / file).chmod(0o755)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the server may run as another user
        _replace(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return RepoResult(repo=output, models=tuple(models), launch=launch, docker=docker)


def _write_model(folder: Path, config: str, payload: Path, filename: str) -> None:
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(config)
    shutil.copyfile(payload, folder / "1" / filename)


def _replace(new: Path, output: Path) -> None:
    """Rename ``new`` to ``output``; an existing ``output`` is moved aside first, removed after."""
    if not output.exists():
        os.rename(new, output)
        return
    old = output.with_name(f".{output.name}.old-{os.getpid()}")
    os.rename(output, old)
    try:
        os.rename(new, output)
    except OSError:
        os.rename(old, output)
        raise
    shutil.rmtree(old, ignore_errors=True)
