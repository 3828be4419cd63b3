"""An ONNX file read once per process for each version of the file (esc_deploy.common.files.file_version).

The engine build asks the same files for their metadata, nodes and types from several stages (the model's
facts, the checker, the attention path, the plugin check, the fp16 record, the layer report's anchors) and
for their hash; each used to read the file again. ``read_graph`` reads the bytes once, keeps the parsed
graph (without external weights) and notes the bytes' hash. The graph is shared: read it, never change it;
``owned_copy`` is the one to change.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import TYPE_CHECKING

from esc_deploy.common.files import file_version, note_sha256

if TYPE_CHECKING:
    import onnx

_KEEP = 4  # the source, its standard-attention and fp16 versions, one more
_GRAPHS: OrderedDict[tuple[int, ...], onnx.ModelProto] = OrderedDict()


def read_graph(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """``onnx.load(path, load_external_data=False)``, shared while the file stays the same."""
    import onnx

    version = file_version(path)
    if version not in _GRAPHS:
        with open(path, "rb") as f:
            data = f.read()
        _GRAPHS[version] = onnx.load_model_from_string(data)
        note_sha256(version, data)
        while len(_GRAPHS) > _KEEP:
            _GRAPHS.popitem(last=False)
    _GRAPHS.move_to_end(version)
    return _GRAPHS[version]


def owned_copy(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """``onnx.load(path)``: a copy of the graph the caller may change, external weights loaded."""
    import onnx
    from onnx.external_data_helper import load_external_data_for_model

    model = onnx.ModelProto()
    model.CopyFrom(read_graph(path))
    load_external_data_for_model(model, os.path.dirname(os.path.abspath(path)))  # none: nothing to do
    return model
