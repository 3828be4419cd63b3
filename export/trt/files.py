"""The engine modules' file helpers, which live in esc_deploy.common.files (onnx_graph and serving use them too)."""

from esc_deploy.common.files import atomic_write_json as atomic_write_json
from esc_deploy.common.files import sha256_file as sha256_file
