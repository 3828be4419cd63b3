"""A Triton model repository for an exported ESC model: TensorRT engine, ONNX Runtime, Python backend.

Layout written by :func:`make_repository` (``DIR`` is the model repository itself)::

    DIR/<name>/config.pbtxt              platform tensorrt_plan, KIND_GPU          (with --engine)
    DIR/<name>/1/model.plan              the engine, copied
    DIR/<name>_onnx/config.pbtxt         platform onnxruntime_onnx, KIND_CPU       (with --onnx)
    DIR/<name>_onnx/1/model.onnx
    DIR/<name>_python/config.pbtxt       backend python, KIND_AUTO                 (with --onnx)
    DIR/<name>_python/1/model.py         serving/model_repository/python_model.py: ONNX Runtime in the Python backend
    DIR/<name>_python/1/model.onnx
    DIR/launch_triton.sh                 the exact tritonserver command (plugin via --backend-config)
    DIR/docker_triton.sh                 the same inside the Triton container

    DIR/<name>_image/config.pbtxt        backend python: an image in, the image upscaled out (UINT8 HWC)
    DIR/<name>_image/1/model.py          serving/model_repository/image_model.py, BLS to the tensor model
    DIR/<name>_image_bytes/...           the same model for encoded files: PNG/JPEG bytes in, PNG bytes out

Triton only treats sub-folders as models, so the two scripts at the top level are ignored by it.
The image models call the tensor model ``image_target`` (default: the plan where there is one, else the
Python variant, which every Triton can load) and take its limits (tile, minimum, batch).

Facts travel, nobody is asked for them again: the model's ``ESCConfig`` (scale, window, minimum side)
comes from the ONNX metadata ``esc.config`` written by the exporter, or from the engine's sidecar,
which carries it from the same place; the engine's batch layout and spatial limits come from the
sidecar's optimization profile. With a minimum batch of 1, ``max_batch_size`` is the profile's maximum
batch and dims are ``[3, -1, -1]``; otherwise Triton must not batch (``max_batch_size: 0``) and the
batch dimension is part of dims. The ONNX Runtime variants have limits of their own (``ort_max_batch``,
``ort_max_input``), not the engine's. Every variant records its limits and the model's facts in
``parameters`` (the keys below), which the client and the Python model read.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from esc.config import ESCConfig
from esc_deploy.export.shape_profile import CHANNELS
from esc_deploy.export.tensor_names import INPUT_NAME, OUTPUT_NAME
from esc_deploy.runtime.facts import ModelFacts

if TYPE_CHECKING:
    from esc_deploy.export.trt.sidecar import EngineSidecar

Variant = Literal["plan", "onnx", "python"]
ImageIO = Literal["pixels", "encoded"]
IMAGE_SUFFIX: dict[ImageIO, str] = {"pixels": "_image", "encoded": "_image_bytes"}
IMAGE_MODEL = Path(__file__).with_name("image_model.py")
IMAGE_TENSOR = "IMAGE"  # the image models' input and output
# 2048x2048 input pixels: the x4 output's float32 accumulator then holds 805 MB (twice that with alpha).
DEFAULT_IMAGE_MAX_PIXELS = 2048 * 2048
DEFAULT_IMAGE_OVERLAP = 32  # input pixels, as esc-deploy upscale
DEFAULT_IMAGE_INSTANCES = 2  # images in flight at once: their tiles meet in the tensor model's batches
VARIANTS: tuple[Variant, ...] = get_args(Variant)
DEFAULT_TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:25.01-py3"
CONTAINER_REPO = "/models"
CONTAINER_PLUGINS = "/plugins"
PYTHON_MODEL = Path(__file__).with_name("python_model.py")
# The ONNX Runtime variants' own limits. Memory bounds them: ONNX Runtime on the CPU peaks at about
# 3.6 GiB per 256x256 ESC-light image (a batch of 4 such tiles was OOM-killed at 22 GiB).
DEFAULT_ORT_MAX_BATCH = 2
DEFAULT_ORT_MAX_INPUT = (256, 256)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SUFFIX = {"plan": "", "onnx": "_onnx", "python": "_python"}


@dataclass(frozen=True)
class RepoSpec:
    """Everything that decides the repository's contents."""

    name: str
    model: ESCConfig
    engine: Path | None = None
    sidecar: EngineSidecar | None = None  # the engine's, read by EngineSidecar.read
    onnx: Path | None = None
    plugin: Path | None = None
    variants: tuple[Variant, ...] = ()  # () : every variant the given files allow
    max_batch: int | None = None  # lowers the engine profile's maximum batch
    ort_max_batch: int = DEFAULT_ORT_MAX_BATCH
    ort_max_input: tuple[int, int] = DEFAULT_ORT_MAX_INPUT
    instances: int = 1
    queue_delay_us: int = 100
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    triton_image: str = DEFAULT_TRITON_IMAGE
    more_engines: tuple[Path, ...] = ()  # the same model built for other compute capabilities
    more_sidecars: tuple[EngineSidecar, ...] = ()  # theirs, in the same order
    image: bool = True  # the image models (<name>_image, <name>_image_bytes)
    image_target: Variant | None = None  # None: plan if written, else python, else onnx
    image_max_pixels: int = DEFAULT_IMAGE_MAX_PIXELS
    image_overlap: int = DEFAULT_IMAGE_OVERLAP
    image_instances: int = DEFAULT_IMAGE_INSTANCES

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"model name must match {_NAME_RE.pattern}, got {self.name!r}")
        for label, value in (("instances", self.instances), ("ONNX Runtime max batch", self.ort_max_batch)):
            if value < 1:
                raise ValueError(f"{label} must be >= 1, got {value}")
        if self.queue_delay_us < 0:
            raise ValueError(f"queue delay must be >= 0 microseconds, got {self.queue_delay_us}")
        if self.max_batch is not None and self.max_batch < 1:
            raise ValueError(f"max batch must be >= 1, got {self.max_batch}")
        if (self.engine is None) != (self.sidecar is None):
            raise ValueError("an engine needs its sidecar (spec_from_files reads it)")
        side = self.model.min_side
        if min(self.ort_max_input) < side:
            raise ValueError(
                f"ONNX Runtime max input {format_hw(self.ort_max_input)} is below the model's minimum side {side}"
            )
        available = self._available()
        wanted = self.selected
        for variant in wanted:
            if variant not in VARIANTS:
                raise ValueError(f"unknown variant {variant!r}; expected some of {list(VARIANTS)}")
            if variant not in available:
                needs = "an engine" if variant == "plan" else "an ONNX file"
                raise ValueError(f"variant {variant!r} needs {needs}")
        if not wanted:
            raise ValueError("nothing to serve: give an ONNX file, an engine, or both")
        if "plan" in wanted:
            self.batch_layout("plan")  # validates max_batch against the profile
        self._check_more_engines()
        if self.image:
            target = self.tensor_target
            if target not in wanted:
                raise ValueError(f"the image models call the {target!r} variant, which is not written")
            for label, value in (("image max pixels", self.image_max_pixels), ("instances", self.image_instances)):
                if value < 1:
                    raise ValueError(f"{label} must be >= 1, got {value}")
            if self.image_overlap < 0:
                raise ValueError(f"image tile overlap must be >= 0, got {self.image_overlap}")

    def _check_more_engines(self) -> None:
        """Further engines must be the primary one built for other GPUs: same model, profile and tensors."""
        if len(self.more_engines) != len(self.more_sidecars):
            raise ValueError("each further engine needs its sidecar (spec_from_files reads them)")
        if self.more_engines and self.sidecar is None:
            raise ValueError("further engines need a first one")
        seen: dict[str, Path] = {}
        engines = ((self.engine, self.sidecar),) if self.sidecar else ()
        for engine, sidecar in (*engines, *zip(self.more_engines, self.more_sidecars, strict=True)):
            assert engine is not None and self.sidecar is not None
            for label, mine, first in (
                ("model (esc.config)", sidecar.model, self.sidecar.model),
                ("optimization profile", sidecar.profile, self.sidecar.profile),
                ("tensor names", (sidecar.input_name, sidecar.output_name), (self.input_name, self.output_name)),
                ("precision", sidecar.precision, self.sidecar.precision),
            ):
                if mine != first:
                    raise ValueError(f"engine {engine} differs from {self.engine} in its {label}: build both alike")
            for cc in _capabilities(sidecar):
                if cc in seen:
                    raise ValueError(f"engines {seen[cc]} and {engine} both run on compute capability {cc}")
                seen[cc] = engine

    def plan_files(self) -> dict[str, tuple[Path, str]]:
        """Per compute capability, the engine and its file name in the version folder (``cc_model_filenames``):
        the first engine is ``model.plan``, further ones ``model_<target>.plan``."""
        if self.engine is None or self.sidecar is None:
            return {}
        files = {cc: (self.engine, PLAN_FILE) for cc in _capabilities(self.sidecar)}
        for engine, sidecar in zip(self.more_engines, self.more_sidecars, strict=True):
            name = f"model_{sidecar.target.slug.replace(' ', '_')}.plan"
            files.update({cc: (engine, name) for cc in _capabilities(sidecar)})
        return files

    @property
    def tensor_target(self) -> Variant:
        """The tensor model the image models send their tiles to."""
        if self.image_target is not None:
            return self.image_target
        return next(v for v in ("plan", "python", "onnx") if v in self.selected)

    @property
    def image_models(self) -> tuple[str, ...]:
        return tuple(self.name + IMAGE_SUFFIX[io] for io in get_args(ImageIO)) if self.image else ()

    def _available(self) -> tuple[Variant, ...]:
        return tuple(v for v in VARIANTS if (v == "plan" and self.engine) or (v != "plan" and self.onnx))

    @property
    def selected(self) -> tuple[Variant, ...]:
        """The variants written: ``variants``, else every one the given files allow."""
        return self.variants or self._available()

    def model_name(self, variant: Variant) -> str:
        return self.name + _SUFFIX[variant]

    def batch_layout(self, variant: Variant) -> tuple[int, list[int]]:
        """(max_batch_size, dims) of the input and output in config.pbtxt."""
        if variant != "plan":
            return self.ort_max_batch, [CHANNELS, -1, -1]
        assert self.sidecar is not None  # checked in __post_init__
        profile = self.sidecar.profile
        lo, hi = profile.min[0], profile.max[0]
        if lo == 1:
            if self.max_batch is not None and self.max_batch > hi:
                raise ValueError(f"max batch {self.max_batch} exceeds the engine profile's maximum batch {hi}")
            return (self.max_batch or hi), [CHANNELS, -1, -1]
        if self.max_batch is not None:
            raise ValueError(
                f"the engine profile's minimum batch is {lo}, not 1: Triton cannot batch it, leave max batch unset"
            )
        return 0, [lo if lo == hi else -1, CHANNELS, -1, -1]

    def facts(self, variant: Variant) -> ModelFacts:
        """The model as the variant serves it: the engine's profile limits it, the ONNX variants' own limits."""
        if variant == "plan":
            assert self.sidecar is not None
            return ModelFacts.from_sidecar(self.sidecar)
        return ModelFacts.from_config(self.model, source=self.name, max_hw=self.ort_max_input)

    def parameters(self, variant: Variant) -> dict[str, str]:
        """config.pbtxt parameters: the model's facts (read back by ModelFacts.from_triton_config and
        python_model.py), and for engines what the server must match."""
        params = self.facts(variant).triton_parameters()
        if variant == "plan":
            params.update(self.engine_parameters())
        return params

    def warmup_sizes(self, variant: Variant) -> list[tuple[str, tuple[int, int]]]:
        """The ``model_warmup`` samples (zeros, batch 1): the smallest input and the largest tile, so that
        neither the first small nor the first large request pays for the runtime's warm-up."""
        facts = self.facts(variant)
        low, high = facts.min_hw, facts.max_hw
        return [("minimum", low)] + ([("maximum tile", high)] if high is not None and high != low else [])

    def engine_parameters(self) -> dict[str, str]:
        """What the server must match to run the engine: runtime flavour and version, target, precision."""
        if self.sidecar is None:
            return {}
        return {
            "engine_runtime": self.sidecar.runtime.value,
            "engine_runtime_version": self.sidecar.runtime_version,
            "engine_target": self.sidecar.target.describe(),
            "engine_precision": self.sidecar.precision.value,
        }


def _capabilities(sidecar: EngineSidecar) -> tuple[str, ...]:
    """The compute capabilities an engine runs on: the GPU it was built on (TensorRT), or the ones it
    was built for (TensorRT for RTX)."""
    target = sidecar.target
    return (target.gpu.compute_capability_text,) if target.gpu is not None else target.compute_capabilities


def format_hw(hw: tuple[int, int]) -> str:
    return f"{hw[0]}x{hw[1]}"


def parse_hw(text: str) -> tuple[int, int]:
    """'256x384' (or '256') -> (256, 384)."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"expected HEIGHTxWIDTH like 256x256, found {text!r}")
    h, w = int(parts[0]), int(parts[-1])
    return h, w


def spec_from_files(
    *,
    onnx: Path | None = None,
    engine: Path | None = None,
    name: str | None = None,
    plugin: Path | None = None,
    more_engines: tuple[Path, ...] = (),
    **options: Any,
) -> RepoSpec:
    """A :class:`RepoSpec` whose model facts come from the ONNX metadata and the engine's sidecar."""
    from esc_deploy.export.onnx_graph.metadata import read_model_config
    from esc_deploy.export.trt.sidecar import EngineSidecar

    if engine is not None and (not engine.is_file() or engine.stat().st_size == 0):
        raise ValueError(f"engine {engine} does not exist or is empty")
    for label, path in (("plugin", plugin), ("ONNX model", onnx)):
        if path is not None and not path.is_file():
            raise ValueError(f"{label} {path} does not exist")
    for extra in more_engines:
        if not extra.is_file() or extra.stat().st_size == 0:
            raise ValueError(f"engine {extra} does not exist or is empty")
    sidecar = EngineSidecar.read(engine) if engine is not None else None
    if onnx is not None:
        model = read_model_config(onnx)
        if sidecar is not None and sidecar.model != model:
            raise ValueError(f"engine {engine} was built from another model than {onnx} (esc.config differs)")
    elif sidecar is not None:
        model = sidecar.model
    else:
        raise ValueError("nothing to serve: give an ONNX file, an engine, or both")
    if sidecar is not None:
        options.setdefault("input_name", sidecar.input_name)
        options.setdefault("output_name", sidecar.output_name)
    if onnx is not None:
        check_onnx(onnx, options.get("input_name", INPUT_NAME), options.get("output_name", OUTPUT_NAME))
    default_name = (engine or onnx).stem  # type: ignore[union-attr]
    return RepoSpec(
        name=name or default_name,
        model=model,
        engine=engine,
        sidecar=sidecar,
        onnx=onnx,
        plugin=plugin,
        more_engines=tuple(more_engines),
        more_sidecars=tuple(EngineSidecar.read(e) for e in more_engines),
        **options,
    )


def check_onnx(path: Path, input_name: str, output_name: str) -> None:
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


_BACKEND = {
    "plan": ("platform", "tensorrt_plan"),
    "onnx": ("platform", "onnxruntime_onnx"),
    "python": ("backend", "python"),
}
_KIND = {"plan": "KIND_GPU", "onnx": "KIND_CPU", "python": "KIND_AUTO"}
PLAN_FILE = "model.plan"


def _schema() -> Any:
    """tritonclient's ``model_config_pb2`` (the serve extra); ValueError (one line) without it."""
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise ValueError(
            f"writing a Triton repository needs tritonclient[grpc] ({exc}): pip install esc-deploy[serve]"
        ) from None
    return model_config_pb2


def model_config(spec: RepoSpec, variant: Variant) -> Any:
    """Triton's ``ModelConfig`` (tritonclient's protobuf) of one tensor variant: built as the schema says,
    written by :func:`config_text`, so that a field Triton does not know cannot be written."""
    pb = _schema()

    max_batch, dims = spec.batch_layout(variant)
    field, value = _BACKEND[variant]
    config = pb.ModelConfig(name=spec.model_name(variant), max_batch_size=max_batch, **{field: value})
    config.input.add(name=spec.input_name, data_type=pb.TYPE_FP32, dims=dims)
    config.output.add(name=spec.output_name, data_type=pb.TYPE_FP32, dims=dims)
    count = spec.instances if variant == "plan" else 1
    config.instance_group.add(kind=pb.ModelInstanceGroup.Kind.Value(_KIND[variant]), count=count)
    if max_batch > 1:
        config.dynamic_batching.max_queue_delay_microseconds = spec.queue_delay_us
    for key, text in spec.parameters(variant).items():
        config.parameters[key].string_value = text
    if variant == "plan":
        for cc, (_, file) in spec.plan_files().items():
            config.cc_model_filenames[cc] = file
    for label, hw in spec.warmup_sizes(variant):
        warmup = config.model_warmup.add(name=f"{label} {format_hw(hw)}", batch_size=1 if max_batch else 0)
        shape = dims[:-2] + list(hw) if max_batch else [1 if d == -1 else d for d in dims[:-2]] + list(hw)
        warmup.inputs[spec.input_name].CopyFrom(
            pb.ModelWarmup.Input(data_type=pb.TYPE_FP32, dims=shape, zero_data=True)
        )
    return config


def image_config(spec: RepoSpec, io: ImageIO) -> Any:
    """The image model's ``ModelConfig``: UINT8 pixels [H, W, C] (or a file's bytes [N]) in and out,
    with the tensor model's name, I/O and limits, and the tile plan's settings, in ``parameters``."""
    pb = _schema()

    target = spec.tensor_target
    dims = [-1, -1, -1] if io == "pixels" else [-1]
    config = pb.ModelConfig(name=spec.name + IMAGE_SUFFIX[io], backend="python", max_batch_size=0)
    config.input.add(name=IMAGE_TENSOR, data_type=pb.TYPE_UINT8, dims=dims)
    config.output.add(name=IMAGE_TENSOR, data_type=pb.TYPE_UINT8, dims=dims)
    config.instance_group.add(kind=pb.ModelInstanceGroup.KIND_CPU, count=spec.image_instances)
    params = spec.parameters(target) | {
        "esc_image_io": io,
        "esc_max_pixels": str(spec.image_max_pixels),
        "esc_tile_overlap": str(spec.image_overlap),
        "esc_tensor_model": spec.model_name(target),
        "esc_tensor_input": spec.input_name,
        "esc_tensor_output": spec.output_name,
        "esc_tensor_max_batch": str(max(1, spec.batch_layout(target)[0])),
    }
    for key, text in params.items():
        config.parameters[key].string_value = text
    return config


def config_text(config: Any) -> str:
    """config.pbtxt: protobuf's text format of a ``ModelConfig``."""
    from google.protobuf import text_format

    return str(text_format.MessageToString(config))


def launch_command(repo: Path, plugin: Path | None) -> list[str]:
    """``tritonserver`` on this machine, serving ``repo`` with the plugin loaded by the TensorRT backend."""
    cmd = ["tritonserver", f"--model-repository={repo.resolve()}"]
    if plugin is not None:
        cmd.append(f"--backend-config=tensorrt,plugins={plugin.resolve()}")
    return cmd


def docker_command(repo: Path, plugin: Path | None, image: str, tensor_models: Sequence[str]) -> list[str]:
    """The same server in NVIDIA's container: repository at /models, plugin folder at /plugins. It loads the
    tensor models only: the image models import esc-deploy and Pillow, which NVIDIA's image does not have
    (Triton stops when a model fails to load); an image with esc-deploy installed serves them too."""
    # --shm-size: the Python backend passes tensors through /dev/shm, and Docker's default is 64 MB.
    cmd = ["docker", "run", "--rm", "--gpus", "all", "--shm-size=2g", "-p", "8000:8000", "-p", "8001:8001",
           "-p", "8002:8002"]  # fmt: skip
    cmd += ["-v", f"{repo.resolve()}:{CONTAINER_REPO}:ro"]
    if plugin is not None:
        cmd += ["-v", f"{plugin.resolve().parent}:{CONTAINER_PLUGINS}:ro"]
    cmd += [image, "tritonserver", f"--model-repository={CONTAINER_REPO}", "--model-control-mode=explicit"]
    cmd += [f"--load-model={name}" for name in tensor_models]
    if plugin is not None:
        cmd.append(f"--backend-config=tensorrt,plugins={CONTAINER_PLUGINS}/{plugin.name}")
    return cmd


def _script(cmd: list[str], spec: RepoSpec, where: str) -> str:
    models = ", ".join([spec.model_name(v) for v in spec.selected] + list(spec.image_models))
    text = f"#!/bin/sh\n# Generated by serving/make_triton_repo.py: serves {models} {where}.\n"
    if spec.sidecar is not None:
        sidecar = spec.sidecar
        text += (
            f"# The engine was built with {sidecar.runtime.value} {sidecar.runtime_version} for "
            f"{sidecar.target.describe()}: the server\n"
            "# must run that runtime version on such a GPU (and the plugin must be built against it).\n"
        )
    return text + f'exec {shlex.join(cmd)} "$@"\n'


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
        raise ValueError(f"{output} already exists (overwriting replaces it)")
    output.parent.mkdir(parents=True, exist_ok=True)
    launch = launch_command(output, spec.plugin)
    docker = docker_command(output, spec.plugin, spec.triton_image, [spec.model_name(v) for v in spec.selected])
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        for variant in spec.selected:
            folder = tmp / spec.model_name(variant)
            (folder / "1").mkdir(parents=True)
            (folder / "config.pbtxt").write_text(config_text(model_config(spec, variant)))
            if variant == "plan":
                for engine, file in set(spec.plan_files().values()):
                    shutil.copyfile(engine, folder / "1" / file)
            else:
                assert spec.onnx is not None
                shutil.copyfile(spec.onnx, folder / "1" / "model.onnx")
            if variant == "python":
                shutil.copyfile(PYTHON_MODEL, folder / "1" / "model.py")
        for io in get_args(ImageIO) if spec.image else ():
            folder = tmp / (spec.name + IMAGE_SUFFIX[io])
            (folder / "1").mkdir(parents=True)
            (folder / "config.pbtxt").write_text(config_text(image_config(spec, io)))
            shutil.copyfile(IMAGE_MODEL, folder / "1" / "model.py")
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
    models = tuple(spec.model_name(v) for v in spec.selected) + spec.image_models
    return RepoResult(repo=output, models=models, launch=launch, docker=docker)


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
