"""Export: ESC -> ONNX (``onnx_graph``) -> TensorRT engine (``trt``), and what both share (precision, shape
profiles, the plugin node's contract, the bundled photographs).

The scripts beside the packages (``to_onnx.py``, ``build_engine.py``, ``pipeline.py``) are thin command lines.
"""
