"""ESC -> ONNX: the exporter, the plugin attention node, metadata, calibrated fp16."""
