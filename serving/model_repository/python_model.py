"""Triton Python-backend model: the exported ESC ONNX file run by ONNX Runtime.

serving/model_repository/writer.py copies this file to ``<repo>/<name>_python/1/model.py`` beside ``model.onnx``.
It is what a Triton without the ONNX Runtime and TensorRT backends serves (PyTriton's server, a
CPU-only host). Instances of kind GPU use ONNX Runtime's CUDA execution provider on their device when
the installed onnxruntime has it; every other instance runs on the CPU.

Runs inside Triton's Python stub, so it imports nothing of this project: everything it needs is in
the model's config.pbtxt (I/O names, ``esc_min_input_hw`` / ``esc_max_input_hw``, ``esc_scale``).
Tensors cross the stub boundary by DLPack (``np.from_dlpack`` in, :func:`to_triton` out): the stub of
tritonserver 2.51 is built against numpy 1, so with numpy 2 its ``as_numpy()`` returns zeros and
``Tensor(name, ndarray)`` sends no bytes. Its ``Tensor.from_dlpack`` takes the capsule and renames it
``used_dlpack`` where the DLPack protocol says ``used_dltensor``; numpy's capsule destructor then does
not recognise a consumed capsule and prints a traceback per tensor into the server's log. The stub
owns the tensor from then on (it calls the tensor's own deleter), so :func:`to_triton` removes the
capsule's destructor once the stub has renamed it.

Dynamic batching hands ``execute`` several requests; requests of one spatial shape run as one
ONNX Runtime call. A request outside the limits gets an error response of its own (one line naming
the model); the others in the batch still run.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

_CONSUMED = b"used_dlpack"  # the stub's name for a capsule it took over
_capsule_name = ctypes.pythonapi.PyCapsule_GetName
_capsule_name.argtypes, _capsule_name.restype = [ctypes.py_object], ctypes.c_char_p
_set_destructor = ctypes.pythonapi.PyCapsule_SetDestructor
_set_destructor.argtypes, _set_destructor.restype = [ctypes.py_object, ctypes.c_void_p], ctypes.c_int


def to_triton(name: str, array: np.ndarray) -> Any:
    """``array`` as the stub's output tensor ``name``, by DLPack (see the module docstring for why)."""
    contiguous = np.ascontiguousarray(array)
    if not contiguous.flags.writeable:  # DLPack 0.8, the stub's, cannot say read-only
        contiguous = contiguous.copy()
    capsule = contiguous.__dlpack__()
    tensor = pb_utils.Tensor.from_dlpack(name, capsule)
    if _capsule_name(capsule) == _CONSUMED:
        _set_destructor(capsule, None)  # the stub's now: numpy must not release it, nor complain
    return tensor


def _hw(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.split(","))
    return h, w


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        import onnxruntime as ort

        config = json.loads(args["model_config"])
        self.name = str(config["name"])
        self.input_name = str(config["input"][0]["name"])
        self.output_name = str(config["output"][0]["name"])
        params = {k: v["string_value"] for k, v in (config.get("parameters") or {}).items()}
        self.scale = int(params["esc_scale"])
        self.min_hw = _hw(params["esc_min_input_hw"])
        self.max_hw = _hw(params["esc_max_input_hw"]) if "esc_max_input_hw" in params else None
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        providers: list[Any] = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(args["model_instance_device_id"])}))
        options = ort.SessionOptions()
        threads = int(params.get("ort_intra_op_threads", "0"))
        options.intra_op_num_threads = threads  # 0: ONNX Runtime's default (one per core)
        # The arena (on by default) without the memory pattern: the same speed at half the peak memory, and no
        # slow second request (export/onnx_graph/ort_session.py has the measurements).
        options.enable_mem_pattern = False
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.providers = self.session.get_providers()

    def _problem(self, array: np.ndarray) -> str | None:
        shape = "x".join(map(str, array.shape))
        if array.ndim != 4 or array.shape[1] != 3:
            return f"expected input {self.input_name!r} of shape [batch, 3, height, width], got {shape}"
        h, w = array.shape[2:]
        if h < self.min_hw[0] or w < self.min_hw[1]:
            return (
                f"input {shape} is below the minimum {self.min_hw[0]}x{self.min_hw[1]} "
                "(esc_min_input_hw): pad it (reflect), or let serving/triton_client.py do so"
            )
        if self.max_hw is not None and (h > self.max_hw[0] or w > self.max_hw[1]):
            return f"input {shape} is above the maximum {self.max_hw[0]}x{self.max_hw[1]} (esc_max_input_hw): tile it"
        return None

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        groups: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
        for i, request in enumerate(requests):
            tensor = pb_utils.get_input_tensor_by_name(request, self.input_name)
            array = np.from_dlpack(tensor)
            problem = self._problem(array)
            if problem is not None:
                responses[i] = self._error(problem)
            else:
                groups.setdefault(tuple(array.shape[1:]), []).append((i, array))
        for members in groups.values():
            batch = np.concatenate([array for _, array in members]) if len(members) > 1 else members[0][1]
            try:
                (result,) = self.session.run([self.output_name], {self.input_name: batch})
            except Exception as exc:  # ONNX Runtime raises its own exception types
                for i, _ in members:
                    responses[i] = self._error(f"ONNX Runtime failed: {' '.join(str(exc).split())}")
                continue
            start = 0
            for i, array in members:
                part = np.ascontiguousarray(result[start : start + len(array)], dtype=np.float32)
                start += len(array)
                out = to_triton(self.output_name, part)
                responses[i] = pb_utils.InferenceResponse(output_tensors=[out])
        return responses

    def _error(self, message: str) -> Any:
        return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(f"{self.name}: {message}"))

    def finalize(self) -> None:
        self.session = None
