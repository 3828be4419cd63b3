"""Export tooling: ESC -> ONNX -> TensorRT engine -> Triton model repository.

The modules here are libraries; the scripts beside them (``to_onnx.py``, ``build_engine.py``,
``make_triton_repo.py``) are thin command lines over them.
"""
