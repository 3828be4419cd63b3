"""ONNX files and hashes read once per version of the file (export/onnx_graph/graph_file.py, common/files.py)."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from esc_deploy.common.files import atomic_write_bytes, sha256_file
from esc_deploy.export.onnx_graph.graph_file import owned_copy, read_graph


def _model(scale: float) -> bytes:
    weight = numpy_helper.from_array(np.full((1,), scale, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["y"], name="mul")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [weight],
    )  # fmt: skip
    return helper.make_model(graph).SerializeToString()


def _opens(path: Path, run: Callable[[], object]) -> int:
    """How many times Python opened ``path`` while ``run()`` ran (the audit hook sees every open)."""
    seen: list[str] = []
    target = os.fspath(path)
    active = [True]

    def hook(event: str, args: tuple) -> None:
        if active[0] and event == "open" and os.fspath(args[0]) == target:
            seen.append(event)

    sys.addaudithook(hook)
    try:
        run()
    finally:
        active[0] = False  # audit hooks cannot be removed
    return len(seen)


def test_one_read_serves_the_graph_and_the_hash(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    data = _model(2.0)
    path.write_bytes(data)
    assert _opens(path, lambda: (read_graph(path), read_graph(path), sha256_file(path), sha256_file(path))) == 1
    assert read_graph(path) is read_graph(path)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_a_new_version_of_the_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(_model(2.0))
    first, first_sha = read_graph(path), sha256_file(path)
    atomic_write_bytes(path, _model(3.0))  # what every writer of the project does: a new file, renamed over
    second = read_graph(path)
    assert second is not first and numpy_helper.to_array(second.graph.initializer[0])[0] == 3.0
    assert sha256_file(path) != first_sha == hashlib.sha256(_model(2.0)).hexdigest()


def test_owned_copy_is_the_callers_to_change(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(_model(2.0))
    copy = owned_copy(path)
    copy.graph.node[0].name = "changed"
    assert read_graph(path).graph.node[0].name == "mul"
    assert onnx.load(str(path)).graph.node[0].name == "mul"
