"""esc-deploy SUBCOMMAND [ARGS]: the stages' own command lines under one name, plus ``upscale``.

Each subcommand is the stage's ``main`` (the same options and errors as ``python export/to_onnx.py``
and the other scripts), so nothing is spelled twice; ``upscale`` is the user-facing job.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

# subcommand -> (module, what it does); each module has main(argv) -> int
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "export": ("esc_deploy.export.onnx_graph.cli", "ESC checkpoint -> ONNX (python export/to_onnx.py)"),
    "build": ("esc_deploy.export.trt.cli", "ONNX -> TensorRT engine (python export/build_engine.py)"),
    "parity": ("esc_deploy.validation.accuracy.cli", "numerical parity of every backend (python validation/parity.py)"),
    "bench": ("esc_deploy.validation.bench.cli", "latency and memory per backend (python validation/benchmark.py)"),
    "triton-repo": (
        "esc_deploy.serving.model_repository.cli",
        "Triton model repository (python serving/make_triton_repo.py)",
    ),
    "upscale": (
        "esc_deploy.serving.upscale_media",  # videos and --ray there, images in esc_deploy.serving.upscale
        "upscale an image, a folder or a video, keeping format, alpha, gray, 16 bits and audio (--ray: on Ray)",
    ),
}


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in SUBCOMMANDS.items()]
    return (
        "usage: esc-deploy [--version] SUBCOMMAND [ARGS] (esc-deploy SUBCOMMAND --help)\n\nsubcommands:\n"
        + "\n".join(lines)
    )


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("esc-deploy")
    except PackageNotFoundError:  # a checkout on sys.path, not installed
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    from esc_deploy.common.command import error, interrupted, subcommand

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    if args[0] == "--version":
        print(f"esc-deploy {version()}")
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        return error(f"esc-deploy: unknown subcommand {name!r}; expected one of {', '.join(SUBCOMMANDS)}")
    try:
        with subcommand(name):
            entry: Callable[[list[str]], int] = importlib.import_module(SUBCOMMANDS[name][0]).main
            return entry(rest)
    except KeyboardInterrupt:  # also while a stage imports torch: one line, never a traceback
        return interrupted()
