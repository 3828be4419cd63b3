"""fp16 mixed-precision files: measured against float32 on real photographs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from skimage import data

from esc_deploy.export import plugin_contract as contract
from esc_deploy.export.onnx_graph.fp16 import is_mixed_fp16, to_mixed_fp16
from esc_deploy.export.onnx_graph.ort_session import ort_session
from tests.conftest import ExportCache

# Measured (ONNX Runtime CPU, fp16 file vs the float32 PyTorch model, astronaut/coffee/chelsea at
# 75x61 and 64x80): max abs 8.9e-3 (fp_x4), relative L2 1.1e-3, PSNR >= 62.4 dB; the default model
# (covered by the CI parity report) and real_x4 are 2-4x tighter. Bounds leave about 2x headroom.
# light_x4's random weights push activations to 1e12, beyond fp16's range: it is tested in fp32 only.
MAX_ABS = 2e-2
REL_L2 = 3e-3
MIN_PSNR_DB = 55.0


def _photos() -> list[torch.Tensor]:
    out = []
    for image, size in [(data.astronaut(), (75, 61)), (data.coffee(), (64, 80)), (data.chelsea(), (80, 64))]:
        small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC), dtype=np.float32) / 255
        out.append(torch.from_numpy(small).permute(2, 0, 1)[None])
    return out


@pytest.fixture(scope="module")
def photos() -> list[torch.Tensor]:
    return _photos()


@pytest.mark.parametrize("attention", ["plugin", "native"])
@pytest.mark.parametrize("name", ["fp_x4", "real_x4", "tiny_x2"])  # light_x4 overflows fp16 by design
def test_fp16_error_on_photographs(exports: ExportCache, photos: list, name: str, attention: str) -> None:
    fp16 = to_mixed_fp16(exports.proto(name, attention))
    session = ort_session(fp16)
    model = exports.model(name)
    for x in photos:
        with torch.no_grad():
            ref = model(x).numpy()
        (got,) = session.run(None, {"input": x.numpy()})
        assert got.dtype == np.float32  # float32 I/O
        rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
        mse = np.mean((np.clip(got, 0, 1) - np.clip(ref, 0, 1)) ** 2)
        psnr = 10 * np.log10(1 / max(mse, 1e-20))
        assert np.abs(got - ref).max() <= MAX_ABS
        assert rel <= REL_L2
        assert psnr >= MIN_PSNR_DB


@pytest.mark.xdist_group("fp_x4")
def test_fp16_graph_keeps_statistics_and_softmax_in_fp32(exports: ExportCache) -> None:
    fp32 = exports.proto("fp_x4", "native")
    fp16 = to_mixed_fp16(fp32)
    assert is_mixed_fp16(fp16) and not is_mixed_fp16(fp32)
    inferred = onnx.shape_inference.infer_shapes(fp16)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.input]}
    for node in inferred.graph.node:
        if node.op_type in ("LayerNormalization", "Softmax"):
            assert types[node.input[0]] == onnx.TensorProto.FLOAT, node.name
    convs = [n for n in inferred.graph.node if n.op_type == "Conv"]
    assert sum(types.get(n.input[0]) == onnx.TensorProto.FLOAT16 for n in convs) > 0.9 * len(convs)


@pytest.mark.xdist_group("fp_x4")
def test_fp16_plugin_node_takes_fp16_qkv_and_fp32_table(exports: ExportCache) -> None:
    fp16 = onnx.shape_inference.infer_shapes(to_mixed_fp16(exports.proto("fp_x4", "plugin")))
    types = {v.name: v.type.tensor_type.elem_type for v in fp16.graph.value_info}
    tables = {i.name: i.data_type for i in fp16.graph.initializer}
    nodes = [n for n in fp16.graph.node if n.op_type == contract.OP_TYPE]
    assert len(nodes) == 5
    for node in nodes:
        assert types[node.input[0]] == onnx.TensorProto.FLOAT16
        assert tables[node.input[1]] == onnx.TensorProto.FLOAT


@pytest.mark.xdist_group("tiny_x2")
def test_conversion_leaves_the_fp32_model_alone(exports: ExportCache) -> None:
    fp32 = exports.proto("tiny_x2", "plugin")
    before = fp32.SerializeToString()
    to_mixed_fp16(fp32)
    assert fp32.SerializeToString() == before
