"""The Triton model repository: config.pbtxt from the sidecar, the Python-backend model."""
