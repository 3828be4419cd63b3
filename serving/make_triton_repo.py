"""Write a Triton model repository for an exported ESC model (TensorRT engine and/or ONNX file).

    python serving/make_triton_repo.py --onnx build/esc-light_x4.onnx --output triton_repo
    python serving/make_triton_repo.py --engine build/esc-light_x4.plan \
        --plugin build/plugin/libesc_trt_plugin.so --onnx build/esc-light_x4.onnx --output triton_repo

With --onnx alone the repository serves the model on CPUs (ONNX Runtime backend and Python backend);
with --engine it also serves the TensorRT engine. Scale, window and limits come from the ONNX metadata
and the engine's sidecar. The library is serving/model_repository/writer.py. Bad input: one line on stderr, exit 2.
"""

import sys

from esc_deploy.serving.model_repository.cli import main

if __name__ == "__main__":
    sys.exit(main())
