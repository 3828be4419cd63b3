"""ONNX -> TensorRT engine: runtime flavours, options, the plugin, the build, its sidecar."""
