"""How the window attention appears in ONNX: one custom node, or standard ops TensorRT fuses.

``plugin``: a torch custom op that the exporter turns into one ``trt.plugins::ESCWindowAttention``
node per block (the TensorRT plugin's contract, export/plugin_contract.py); the file also carries a
model-local ONNX function of that name whose body is the reference math, so ONNX Runtime runs it.

``native``: standard ops in the form TensorRT's MHA fusion matches: Q scaled before Q.K^T, an
additive bias, Softmax, then .V; with opset >= 23 the attention itself is one ``Attention`` node.

Importing this module registers nothing: ``register()`` (the exporter calls it) makes the three backends
selectable by name, and the torch op is defined on first use (``window_attention_op``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor  # at module scope: torch.library reads the op's annotations

from esc.attention import expand_bias, get_attention, register_attention, relative_position_indices, windowed
from esc_deploy.export import plugin_contract as contract

if TYPE_CHECKING:
    from esc.attention import WindowAttentionSpec

PLUGIN_BACKEND = "onnx-plugin"
NATIVE_BACKEND = "onnx-native"
NATIVE_SDPA_BACKEND = "onnx-native-sdpa"


class _TableSpec:
    """A stand-in module for the reference math inside the custom op (table + sizes only)."""

    def __init__(self, table: Tensor, num_heads: int, window_size: int) -> None:
        self.relative_position_bias = table
        self.num_heads = num_heads
        self.window_size = window_size

    def expanded_bias(self) -> Tensor:
        return expand_bias(self.relative_position_bias, *relative_position_indices(self.window_size))


OP_NAME = "esc_export::window_attention"
_op_lock = threading.Lock()
_op: Any = None


def window_attention_op() -> Any:
    """The torch op behind the plugin node, defined once per process on first use."""
    global _op
    if _op is None:  # the lock only until defined: this runs on every forward
        with _op_lock:  # torch.library refuses a second definition of the same name
            if _op is None:
                _op = _define_window_attention_op()
    return _op


def _define_window_attention_op() -> Any:
    @torch.library.custom_op(OP_NAME, mutates_args=())
    def window_attention(qkv: Tensor, table: Tensor, num_heads: int, window_size: int) -> Tensor:
        """Eager meaning of the plugin node: the naive reference."""
        spec: Any = _TableSpec(table, num_heads, window_size)
        return get_attention("naive")(spec, qkv)

    @window_attention.register_fake
    def _(qkv: Tensor, table: Tensor, num_heads: int, window_size: int) -> Tensor:
        b, c3, h, w = qkv.shape
        return qkv.new_empty(b, c3 // 3, h, w)

    return window_attention


def plugin_attention(module: WindowAttentionSpec, qkv: Tensor) -> Tensor:
    op = window_attention_op()
    out: Tensor = op(qkv, module.relative_position_bias, module.num_heads, module.window_size)
    return out


@windowed
def native_attention(module: WindowAttentionSpec, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    q = q * q.shape[-1] ** -0.5  # scale Q first: the pattern TensorRT fuses into one MHA kernel
    score = q @ k.transpose(-2, -1) + module.expanded_bias().to(q.dtype)
    return F.softmax(score, dim=-1) @ v


@windowed
def native_sdpa_attention(module: WindowAttentionSpec, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Exported as one ONNX ``Attention`` node at opset >= 23."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=module.expanded_bias().to(q.dtype))


BACKENDS = {
    PLUGIN_BACKEND: plugin_attention,
    NATIVE_BACKEND: native_attention,
    NATIVE_SDPA_BACKEND: native_sdpa_attention,
}


def register() -> None:
    """Make the export backends selectable by name in esc (idempotent); the code that needs them calls it.

    Explicit rather than on import: esc's set of backends would otherwise depend on import order, and
    esc (the first stage) never names export.
    """
    for name, fn in BACKENDS.items():
        register_attention(name)(fn)


def _plugin_schema() -> Any:
    from onnx import defs

    param = defs.OpSchema.FormalParameter
    attr = defs.OpSchema.Attribute
    kind = defs.OpSchema.AttrType
    floats = ["tensor(float)", "tensor(float16)"]
    return defs.OpSchema(
        contract.OP_TYPE,
        contract.DOMAIN,
        1,
        inputs=[param("qkv", "T"), param("table", "T1")],
        outputs=[param("output", "T")],
        type_constraints=[("T", floats, ""), ("T1", floats, "")],
        attributes=[
            attr(contract.ATTR_NUM_HEADS, kind.INT, "heads"),
            attr(contract.ATTR_WINDOW_SIZE, kind.INT, "window side"),
            attr(contract.ATTR_PLUGIN_VERSION, kind.STRING, "TensorRT plugin version"),
            attr(contract.ATTR_PLUGIN_NAMESPACE, kind.STRING, "TensorRT plugin namespace"),
        ],
    )


@contextlib.contextmanager
def plugin_schema_registered() -> Iterator[None]:
    """The torch exporter needs an op schema to emit the node; it must not outlive the export, or
    ONNX's own checks in this process would use it instead of the model-local function."""
    from onnx import defs

    defs.register_schema(_plugin_schema())
    try:
        yield
    finally:
        defs.deregister_schema(contract.OP_TYPE, 1, contract.DOMAIN)


def plugin_translation() -> dict[Any, Any]:
    """custom_translation_table entry: the torch op -> one trt.plugins::ESCWindowAttention node."""
    import onnxscript

    def translate(qkv: Any, table: Any, num_heads: int, window_size: int) -> Any:
        # Looked up at call time, while plugin_schema_registered() is in force.
        op = onnxscript.values.Op(onnxscript.values.Opset(contract.DOMAIN, 1), contract.OP_TYPE)
        return op(
            qkv,
            table,
            num_heads=num_heads,
            window_size=window_size,
            plugin_version=contract.PLUGIN_VERSION,
            plugin_namespace=contract.PLUGIN_NAMESPACE,
        )

    window_attention_op()  # the table's key is the op itself: define it first
    return {torch.ops.esc_export.window_attention.default: translate}
