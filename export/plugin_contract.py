"""The one definition of the custom attention node shared by the exporter and the TensorRT plugin.

`engines/plugin/escWindowAttentionPlugin.h` repeats these values in C++; a test reads that header
and checks that both sides agree.
"""

from __future__ import annotations

DOMAIN = "trt.plugins"
OP_TYPE = "ESCWindowAttention"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = ""

# Attribute names on the node (and plugin field names).
ATTR_NUM_HEADS = "num_heads"
ATTR_WINDOW_SIZE = "window_size"
ATTR_PLUGIN_VERSION = "plugin_version"
ATTR_PLUGIN_NAMESPACE = "plugin_namespace"

# Inputs: 0 = qkv map [B, 3C, H, W] (channel order (qkv heads c)), 1 = table [heads, (2w-1)^2].
# Output: 0 = attention map [B, C, H, W].
NUM_INPUTS = 2
NUM_OUTPUTS = 1
