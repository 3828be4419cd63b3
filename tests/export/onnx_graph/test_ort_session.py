"""The project's ONNX Runtime sessions: one-shot sessions without the arena (their many shapes would stay
allocated), repeated-run sessions with the arena but without the memory pattern, whose extra run-sized block
doubled ESC-light's peak memory at 180x320 for no speed (measurements in export/onnx_graph/ort_session.py)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from esc_deploy.export.onnx_graph.ort_session import ort_session


def _relu_graph() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def test_repeated_run_sessions_keep_the_arena_without_the_memory_pattern() -> None:
    session = ort_session(_relu_graph(), arena=True, threads=1)
    options = session.get_session_options()
    assert options.enable_cpu_mem_arena and not options.enable_mem_pattern
    assert options.intra_op_num_threads == 1
    x = np.array([-1.0, 2.0], dtype=np.float32)
    for _ in range(3):  # the runs after the first are the ones the pattern would have changed
        np.testing.assert_array_equal(session.run(None, {"x": x})[0], [0.0, 2.0])


def test_one_shot_sessions_have_no_arena_and_keep_the_pattern() -> None:
    options = ort_session(_relu_graph()).get_session_options()
    assert not options.enable_cpu_mem_arena and options.enable_mem_pattern


def test_the_process_default_of_threads_applies_where_a_session_asks_for_none() -> None:
    from esc_deploy.export.onnx_graph import ort_session as module

    before = module._default_threads
    try:
        module.set_default_threads(None)
        assert ort_session(_relu_graph()).get_session_options().intra_op_num_threads == 0  # ONNX Runtime's own
        module.set_default_threads(1)  # what tests/conftest.py sets in each pytest-xdist worker
        assert ort_session(_relu_graph()).get_session_options().intra_op_num_threads == 1
        assert ort_session(_relu_graph(), threads=2).get_session_options().intra_op_num_threads == 2
    finally:
        module.set_default_threads(before)
